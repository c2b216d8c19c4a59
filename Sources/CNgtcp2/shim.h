#ifndef SOTTO_CNGTCP2_SHIM_H
#define SOTTO_CNGTCP2_SHIM_H

// ngtcp2 0.12 + its GnuTLS crypto helper + GnuTLS, as linked libraries. Only the specific headers are
// included; never <gnutls/openssl.h> (its SSL_* names clash with OpenSSL). Swift code uses the
// CNgtcp2Shim target's `doq_engine` API instead of these headers directly.
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#endif
