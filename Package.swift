// swift-tools-version:6.0
import PackageDescription

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
    .target(name: "TUI", dependencies: ["Resolver", "CNcurses"]),
    .target(
      name: "Resolver",
      dependencies: [
        "COpenSSL",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "TOMLKit", package: "TOMLKit"),
      ]
    ),
    .executableTarget(
      name: "sotto",
      dependencies: [
        "Resolver",
        "TUI",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .testTarget(
      name: "ResolverTests",
      dependencies: [
        "Resolver",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .testTarget(name: "TUITests", dependencies: ["TUI", "Resolver"]),
  ],
  swiftLanguageModes: [.v6]
)
