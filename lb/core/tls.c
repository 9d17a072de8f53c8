/*
 * tls.c - TLS connections as a transport (see tls.h).
 */
#include "lb/core/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TLS_RECORD_MAX 16384 /* the most plaintext a TLS record holds */

/* OpenSSL's verdict on the last call, as an xprt result; remembers why it failed. */
static ssize_t tls_result(struct xprt *x, int ret)
{
    SSL *ssl = x->ctx;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return XPRT_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return XPRT_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify: the orderly end */
    case SSL_ERROR_SYSCALL:
        x->err = ERR_peek_last_error();
        ERR_clear_error();
        if (errno == EAGAIN || errno == EINTR)
            return XPRT_WANT_READ;
        return errno ? XPRT_ERROR : 0; /* EOF without close_notify: an end all the same */
    default:
        x->err = ERR_peek_last_error();
        ERR_clear_error();
        /* the peer closed without close_notify: the framing of HTTP, not TLS,
         * says whether anything was cut short */
        if (ERR_GET_REASON(x->err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return 0;
        return XPRT_ERROR;
    }
}

static ssize_t tls_recv(struct xprt *x, void *buf, size_t len)
{
    int n = SSL_read(x->ctx, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    return n > 0 ? n : tls_result(x, n);
}

/*
 * TLS has no vector write. Each send writes one record of the first
 * min(total, 16 KiB) bytes of the vector, copied together when the first
 * piece is shorter (a response head and its body go out as one record).
 * A retry after a want-write then offers the same first bytes, as many or
 * more (the vector only grows until sent), at an address that may have
 * moved: what OpenSSL requires, with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.
 */
static ssize_t tls_sendv(struct xprt *x, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t want = total < TLS_RECORD_MAX ? total : TLS_RECORD_MAX;
    if (!want)
        return 0;
    const void *p = iov[0].iov_base;
    char one[TLS_RECORD_MAX];
    if (iov[0].iov_len < want) {
        size_t at = 0;
        for (int i = 0; i < iovcnt && at < want; i++) {
            size_t take = iov[i].iov_len < want - at ? iov[i].iov_len : want - at;
            memcpy(one + at, iov[i].iov_base, take);
            at += take;
        }
        p = one;
    }
    int n = SSL_write(x->ctx, p, (int)want);
    return n > 0 ? n : tls_result(x, n);
}

static int tls_handshake(struct xprt *x)
{
    int r = SSL_do_handshake(x->ctx);
    if (r == 1)
        return 0;
    ssize_t e = tls_result(x, r);
    return e == 0 ? XPRT_ERROR : (int)e; /* closed during the handshake: a failure */
}

static int tls_shutw(struct xprt *x)
{
    if (!x->handshaking)
        SSL_shutdown(x->ctx); /* close_notify, best effort: the FIN follows anyway */
    ERR_clear_error();
    return shutdown(x->fd, SHUT_WR) == -1 ? XPRT_ERROR : 0;
}

static bool tls_pending(const struct xprt *x)
{
    return SSL_pending(x->ctx) > 0;
}

/*
 * An established connection ends with close_notify (best effort: one try,
 * never waiting for the peer's). Without it the peer cannot tell our close
 * from a cut (OpenSSL 3 clients report "unexpected eof"), and OpenSSL drops
 * the session of an SSL freed unshut from the cache, so the client could
 * not resume it. Not after a fatal error: OpenSSL forbids it then (the SSL
 * is back "in init"), and has already dropped that session.
 */
static void tls_close(struct xprt *x)
{
    SSL *ssl = x->ctx;
    if (!x->handshaking && !SSL_in_init(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
    close(x->fd);
}

const struct xprt_ops xprt_tls = {
    .name = "tls",
    .recv = tls_recv,
    .sendv = tls_sendv,
    .handshake = tls_handshake,
    .shutw = tls_shutw,
    .pending = tls_pending,
    .close = tls_close,
};

static SSL *tls_new(struct xprt *x, int fd, SSL_CTX *ctx)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    *x = (struct xprt){.ops = &xprt_tls, .ctx = ssl, .fd = fd, .handshaking = true};
    return ssl;
}

int xprt_tls_server(struct xprt *x, int fd, SSL_CTX *ctx)
{
    SSL *ssl = tls_new(x, fd, ctx);
    if (!ssl)
        return -1;
    SSL_set_accept_state(ssl);
    return 0;
}

int xprt_tls_client(struct xprt *x, int fd, SSL_CTX *ctx, const char *sni, const char *host,
                    bool verify, SSL_SESSION *session)
{
    SSL *ssl = tls_new(x, fd, ctx);
    if (!ssl)
        return -1;
    SSL_set_connect_state(ssl);
    if (sni && !SSL_set_tlsext_host_name(ssl, sni))
        goto fail;
    if (verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        if (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(vp, host)
                  : !X509_VERIFY_PARAM_set1_host(vp, host, 0))
            goto fail;
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    }
    if (session)
        SSL_set_session(ssl, session);
    return 0;
fail:
    xprt_close(x);
    return -1;
}

const char *xprt_tls_error(const struct xprt *x, char *buf, size_t len)
{
    SSL *ssl = xprt_ssl(x);
    buf[0] = 0;
    if (!x->err)
        return buf;
    const char *why = ERR_reason_error_string(x->err);
    if (ssl && ERR_GET_REASON(x->err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(ssl);
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        return buf;
    }
    snprintf(buf, len, "%s", why ? why : "TLS error");
    return buf;
}

bool xprt_tls_got_http(const struct xprt *x)
{
    return x->err && ERR_GET_REASON(x->err) == SSL_R_HTTP_REQUEST;
}
