/*
 * tls.h - TLS as a transport (xprt.h) over OpenSSL: the server side of a
 * client connection, the client side of a connection to a backend or of a
 * health check.
 *
 * The SSL_CTX comes from the caller (lb/tls.c builds them from the config);
 * this file only runs connections on it: non-blocking handshakes, reads and
 * writes mapped to the xprt results (OpenSSL's want-read / want-write become
 * XPRT_WANT_READ / XPRT_WANT_WRITE, whichever operation asked), bytes
 * decrypted but not yet read reported by pending(), and a close_notify
 * before the FIN.
 */
#ifndef LB_CORE_TLS_H
#define LB_CORE_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "lb/core/xprt.h"

extern const struct xprt_ops xprt_tls;

/* The server side over FD (owned from now on): the handshake is still to be
 * done (x->handshaking). -1 when out of memory (FD is then closed). */
int xprt_tls_server(struct xprt *x, int fd, SSL_CTX *ctx);

/*
 * The client side over FD: SNI (may be NULL) is sent, and when VERIFY is set
 * the certificate must be valid for HOST, a DNS name or an IP address. A
 * SESSION (may be NULL) is offered for resumption. -1 when out of memory or
 * HOST is unusable (FD is then closed).
 */
int xprt_tls_client(struct xprt *x, int fd, SSL_CTX *ctx, const char *sni, const char *host,
                    bool verify, SSL_SESSION *session);

static inline SSL *xprt_ssl(const struct xprt *x)
{
    return x->ops == &xprt_tls ? x->ctx : NULL;
}

/* Why the last handshake or I/O failed, for logs ("certificate verify failed: unable to get
 * local issuer certificate", "wrong version number"); "" when nothing is known. */
const char *xprt_tls_error(const struct xprt *x, char *buf, size_t len);

/* The failure was a plain HTTP request on a TLS port. */
bool xprt_tls_got_http(const struct xprt *x);

#endif
