#ifndef SOTTO_COPENSSL_SHIM_H
#define SOTTO_COPENSSL_SHIM_H

// The system OpenSSL (libssl-dev) as seen from Swift. Only macros Swift cannot call are wrapped here.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline int sotto_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
  return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long sotto_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
  return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline long sotto_SSL_CACHE_CLIENT_NO_INTERNAL_STORE(void) {
  return SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE;
}

static inline int sotto_SSL_get_ex_new_index(void) { return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/// Adds `x509` to the chain sent after the leaf (the caller keeps its reference; a macro in OpenSSL).
static inline int sotto_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *x509) {
  return (int)SSL_CTX_add1_chain_cert(ctx, x509);
}

static inline int sotto_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
/// Copies `from`'s session ticket keys (name, HMAC and AES keys: 80 octets) to `to`, so that
/// tickets issued under one context resume under the other. 1 on success.
static inline int sotto_SSL_CTX_copy_ticket_keys(SSL_CTX *to, SSL_CTX *from) {
  unsigned char keys[80];
  if (SSL_CTX_get_tlsext_ticket_keys(from, keys, sizeof keys) != 1) return 0;
  int ok = SSL_CTX_set_tlsext_ticket_keys(to, keys, sizeof keys) == 1;
  OPENSSL_cleanse(keys, sizeof keys);
  return ok;
}

/// The certificates in `store` (its CRLs are skipped: NULL), by index; sk_* are macros.
static inline int sotto_X509_STORE_object_count(X509_STORE *store) {
  return sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
}
static inline X509 *sotto_X509_STORE_certificate_at(X509_STORE *store, int index) {
  return X509_OBJECT_get0_X509(sk_X509_OBJECT_value(X509_STORE_get0_objects(store), index));
}

/// The store `ssl` verifies the peer's chain against, instead of its SSL_CTX's (takes a reference).
static inline long sotto_SSL_set1_verify_cert_store(SSL *ssl, X509_STORE *store) {
  return SSL_set1_verify_cert_store(ssl, store);
}

static inline int sotto_ERR_GET_REASON(unsigned long code) { return ERR_GET_REASON(code); }

static inline int sotto_SSL_AD_REASON_OFFSET(void) { return SSL_AD_REASON_OFFSET; }

static inline void sotto_OPENSSL_free(void *p) { OPENSSL_free(p); }

/// An EC P-256 key pair (NULL on failure); free with EVP_PKEY_free. (EVP_EC_gen is a macro.)
static inline EVP_PKEY *sotto_ec_p256_key(void) { return EVP_EC_gen("P-256"); }

/// Bytes held by a memory BIO (BIO_get_mem_data is a macro).
static inline long sotto_BIO_get_mem_data(BIO *b, char **pp) { return BIO_get_mem_data(b, pp); }

#endif
