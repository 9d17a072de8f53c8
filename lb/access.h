/*
 * access.h - the access log (log.access): one line per request.
 */
#ifndef LB_ACCESS_H
#define LB_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Access log. access_open() opens (or reopens, for SIGUSR1) the target
 * named by the config: NULL turns it off. Returns 0, or -1 with errno set.
 */
int access_open(const char *target, bool json);
bool access_enabled(void);
void access_close(void);

struct access_rec {
    double time;        /* unix seconds of the request's start */
    const char *client; /* "ip:port" */
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    int status;          /* 0: no response was sent */
    uint64_t bytes;      /* response bytes sent to the client */
    const char *pool;    /* may be NULL */
    const char *backend; /* may be NULL */
    double upstream_ms;  /* request sent to response head, -1 if none */
    double total_ms;
    const char *request_id;
    const char *host;        /* the request's Host, "" if none */
    const char *user_agent;  /* its User-Agent, "" if none */
    int http_minor;          /* HTTP/1.<minor> */
    unsigned retries;        /* attempts on other backends */
    const char *termination; /* "ok", or why it ended early (README, "Access log") */
    const char *tls_version; /* "TLSv1.3", NULL without TLS */
    const char *tls_cipher;
    const char *tls_sni; /* the server name the client asked for, NULL if none */
};

void access_write(const struct access_rec *r);

#endif
