/*
 * tls.h - the TLS contexts of a configuration, and the session ticket keys
 * every one of them shares.
 *
 * tls_build() reads every certificate and key a configuration names and
 * builds its contexts before the configuration is used (at start, on SIGHUP
 * and for `lb -t`): a missing, unreadable, expired or mismatched file fails
 * the whole configuration with a message naming it, and the running one
 * stays. The contexts die with their snapshot; a connection holds its own
 * reference, so connections open across a reload keep their session.
 *
 * Server side (a listener's tls): TLS 1.2 and 1.3 only (min_version), AEAD
 * suites with forward secrecy, the server's preference, no compression, no
 * renegotiation; ALPN http/1.1 (a client offering only other protocols is
 * refused with no_application_protocol); certificates chosen by SNI from
 * their subjectAltName (exact and wildcard names), the first one for names
 * none has; RSA and ECDSA certificates of the same names share a context so
 * the client's signature algorithms choose; a session cache, and session
 * tickets under keys shared by every worker and every snapshot, so a client
 * resumes on any worker and across reloads.
 *
 * Client side (a pool's tls): the backend's certificate verified against
 * the pool's CA file or the system's store, for the pool's sni name or the
 * backend's address; a client certificate when configured; sessions kept
 * per backend for resumption.
 */
#ifndef LB_TLS_H
#define LB_TLS_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config/cfg.h"

#define TLS_TICKET_KEYS 3 /* the current key and the two before it */

/* Session ticket keys, shared by every snapshot; rotated by the main thread. */
struct tls_keys {
    pthread_mutex_t lock;
    struct tls_key {
        unsigned char name[16];
        unsigned char aes[32];
        unsigned char hmac[32];
    } k[TLS_TICKET_KEYS]; /* k[0] encrypts new tickets; all are accepted */
    int n;
};

int tls_keys_init(struct tls_keys *k);
void tls_keys_deinit(struct tls_keys *k);
/* A new current key; the oldest one is forgotten. */
void tls_keys_rotate(struct tls_keys *k);

/* Handshake counters of one listener on one worker (summed for stats). */
enum tls_fail {
    TLSF_PROTOCOL, /* version or cipher: nothing both sides accept */
    TLSF_HTTP,     /* a plain HTTP request on the TLS port */
    TLSF_ALPN,     /* no protocol in common */
    TLSF_CERT,     /* the peer's certificate (a backend's) */
    TLSF_CLOSED,   /* the peer went away during the handshake */
    TLSF_TIMEOUT,  /* not done within timeouts.client_header */
    TLSF_OTHER,
    TLSF_COUNT
};
const char *tls_fail_name(enum tls_fail f);
/* Why a handshake failed, from the transport's error code. */
enum tls_fail tls_fail_of(unsigned long err, bool closed);

struct tls_name {
    char *name; /* lowercase; "*.example.com" for a wildcard */
    SSL_CTX *ctx;
};

/* A listener's contexts. */
struct tls_server {
    SSL_CTX *def;   /* the first certificate's: absent or unknown SNI */
    SSL_CTX **ctxs; /* every context, def first */
    int nctxs;
    struct tls_name *names; /* for SNI */
    int nnames;
};

struct tls_set {
    struct tls_server *listeners; /* [nlisteners]; def NULL without tls */
    SSL_CTX **pools;              /* [npools]; NULL without tls */
    int nlisteners, npools;
    _Atomic int refs; /* the runtime tables using it: a discovery update reuses the
                       * running set rather than reading certificates again */
};

/* Build the contexts of CFG; NULL with one message per problem in ERRS. One reference. */
struct tls_set *tls_build(const struct cfg *cfg, struct tls_keys *keys, struct cfg_errors *errs);
/* Another user of T (a snapshot derived from the one T was built for); returns T. */
struct tls_set *tls_set_ref(struct tls_set *t);
/* Drop a reference (NULL is fine); the last one frees the contexts. */
void tls_set_free(struct tls_set *t);

/*
 * Where a client connection's new sessions go (the backend's, for the next
 * connection to resume): set as the SSL's app data; keep() owns S. Without
 * one, a session is dropped.
 */
struct tls_session_sink {
    void (*keep)(struct tls_session_sink *sink, SSL_SESSION *s);
};

#endif
