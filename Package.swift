// swift-tools-version:6.0
import PackageDescription

/// Release builds lower value operations without type layouts. With them, IRGen copied and
/// destroyed optionals of Sotto's larger structs (`Pending?`, `CacheEntry?`, `TransportState?`)
/// through the runtime's generic value witnesses and type metadata: about 4,500 instructions of a
/// cold resolution's 87,400 (callgrind; 83,058 without, Benchmarks/HISTORY.md, 2026-12-07).
let releaseLowering: [SwiftSetting] = [
  .unsafeFlags(["-Xfrontend", "-disable-type-layout"], .when(configuration: .release))
]

let package = Package(
  name: "Sotto",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "Resolver", targets: ["Resolver"]),
    .library(name: "TUI", targets: ["TUI"]),
    .executable(name: "sotto", targets: ["sotto"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/LebJe/TOMLKit.git", exact: "0.6.0"),
  ],
  targets: [
    .systemLibrary(
      name: "COpenSSL",
      pkgConfig: "openssl",
      providers: [.apt(["libssl-dev"])]
    ),
    .systemLibrary(
      name: "CNcurses",
      providers: [.apt(["libncurses-dev"]), .brew(["ncurses"])]
    ),
    .target(name: "TUI", dependencies: ["Resolver", "CNcurses"], swiftSettings: releaseLowering),
    // epoll and eventfd for the upstream UDP engine, getrandom for PooledRandom (Glibc's Swift module lacks them).
    .systemLibrary(name: "CLinuxEpoll"),
    .systemLibrary(
      name: "CNgtcp2",
      pkgConfig: "libngtcp2_crypto_gnutls",
      providers: [.apt(["libngtcp2-dev", "libngtcp2-crypto-gnutls-dev", "libgnutls28-dev"])]
    ),
    // The DoQ client engine in C: ngtcp2 callbacks and GnuTLS hooks stay on the C side.
    .target(
      name: "CNgtcp2Shim",
      dependencies: ["CNgtcp2"],
      cSettings: [.headerSearchPath("../CNgtcp2")],
      linkerSettings: [
        .linkedLibrary("ngtcp2_crypto_gnutls"), .linkedLibrary("ngtcp2"), .linkedLibrary("gnutls"),
        // Certificates are verified with OpenSSL, against the store DoT uses (TrustStore).
        .linkedLibrary("crypto"),
      ]
    ),
    .target(
      name: "Resolver",
      dependencies: [
        "COpenSSL",
        "CNgtcp2Shim",
        "CDoQServer",
        "CLinuxEpoll",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "TOMLKit", package: "TOMLKit"),
      ],
      swiftSettings: releaseLowering
    ),
    // Sotto's own authoritative responders (Do53, DoT, DoQ) for `sotto demo` and in-process tests.
    .target(
      name: "Authority",
      dependencies: [
        "Resolver", "COpenSSL", "CDoQServer",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: releaseLowering
    ),
    // The DoQ server engine in C (ngtcp2 0.12 server mode + GnuTLS): the DoQ listener and the lab.
    .target(
      name: "CDoQServer",
      dependencies: ["CNgtcp2"],
      cSettings: [.headerSearchPath("../CNgtcp2")],
      linkerSettings: [
        .linkedLibrary("ngtcp2_crypto_gnutls"), .linkedLibrary("ngtcp2"), .linkedLibrary("gnutls"),
      ]
    ),
    .executableTarget(
      name: "sotto",
      dependencies: [
        "Resolver",
        "TUI",
        "Authority",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: releaseLowering
    ),
    .testTarget(
      name: "ResolverTests",
      dependencies: [
        "Resolver",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      // Test-only helper scripts (the DoQ fixture server), run with python3 by the tests.
      exclude: ["Fixtures"]
    ),
    .testTarget(name: "TUITests", dependencies: ["TUI", "Resolver"]),
    .testTarget(
      name: "AuthorityTests",
      dependencies: [
        "Authority", "Resolver",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
