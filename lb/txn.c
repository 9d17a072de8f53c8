/*
 * txn.c - transactions: their reset, request id and access log line.
 */
#include "lb/txn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lb/access.h"
#include "lb/core/net.h"
#include "lb/core/tls.h"

void txn_init(struct txn *t)
{
    /* everything zero, false or NULL, but what has another "nothing" value;
     * the text fields at the end are written before they are read */
    memset(t, 0, offsetof(struct txn, rid_len));
    t->rid_len = 0;
    t->rid[0] = 0;
    t->lmeth[0] = 0;
    t->lpath_len = 0;
    t->lhost[0] = 0;
    t->lua[0] = 0;
    t->pool = -1;
    t->be_idx = -1;
    t->meth = H1_M_OTHER;
    t->minor = 1;
    t->req_body = H1_BODY_NONE;
    t->req_done = true;
    t->resp_body = H1_BODY_NONE;
}

void txn_deinit(struct txn *t)
{
    bset_free(&t->tried);
}

struct txn *txn_get(struct txn_pool *p)
{
    struct txn *t = p->free;
    if (t) {
        p->free = t->pool_next;
        p->nfree--;
    } else if (!(t = malloc(sizeof(*t)))) {
        return NULL;
    }
    txn_init(t);
    return t;
}

void txn_put(struct txn_pool *p, struct txn **tp)
{
    struct txn *t = *tp;
    if (!t)
        return;
    *tp = NULL;
    txn_deinit(t);
    if (p->nfree >= p->max_free) {
        free(t);
        return;
    }
    t->pool_next = p->free;
    p->free = t;
    p->nfree++;
}

void txn_pool_deinit(struct txn_pool *p)
{
    while (p->free) {
        struct txn *t = p->free;
        p->free = t->pool_next;
        free(t);
    }
    p->nfree = 0;
}

void txn_set_request_id(struct txn *t, const struct h1_header *h, struct rng *rng)
{
    if (h) {
        memcpy(t->rid, h->value, h->value_len);
        t->rid_len = (uint8_t)h->value_len;
        t->rid[t->rid_len] = 0;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t r[2] = {rng_next(rng), rng_next(rng)};
    const uint8_t *p = (const uint8_t *)r;
    for (int i = 0; i < 16; i++) { /* a byte at a time: two digits */
        t->rid[2 * i] = hex[p[i] >> 4];
        t->rid[2 * i + 1] = hex[p[i] & 15];
    }
    t->rid_len = 32;
    t->rid[32] = 0;
}

/* The value of H (NULL: none) into OUT of CAP, truncated. */
static void keep_header(char *out, size_t cap, const struct h1_header *h)
{
    size_t n = h ? (h->value_len < cap - 1 ? h->value_len : cap - 1) : 0;
    if (n)
        memcpy(out, h->value, n);
    out[n] = 0;
}

void txn_remember(struct txn *t, const struct h1_request *req)
{
    size_t ml = req->method_len < sizeof(t->lmeth) - 1 ? req->method_len : sizeof(t->lmeth) - 1;
    memcpy(t->lmeth, req->method, ml);
    t->lmeth[ml] = 0;
    size_t pl = req->target_len < sizeof(t->lpath) ? req->target_len : sizeof(t->lpath);
    memcpy(t->lpath, req->target, pl);
    t->lpath_len = (uint16_t)pl;
    keep_header(t->lhost, sizeof(t->lhost), req->host >= 0 ? &req->headers[req->host] : NULL);
    const struct h1_header *ua = NULL;
    for (int i = 0; i < req->nheaders && !ua; i++)
        if (h1_name_is(&req->headers[i], "user-agent"))
            ua = &req->headers[i];
    keep_header(t->lua, sizeof(t->lua), ua);
}

const char *txn_termination(const struct txn *t)
{
    if (t->term)
        return t->term;
    if (t->own)
        return own_name((enum own_reason)(t->own - 1));
    return "ok";
}

void txn_log(const struct txn *t, const struct sockaddr *client, const struct xprt *x,
             ev_tstamp now)
{
    if (!access_enabled())
        return;
    SSL *ssl = xprt_ssl(x);
    char ip[NET_IP_MAX], peer[NET_PEER_MAX];
    net_peer_text(client, ip, peer);
    struct access_rec r = {
        .time = t->t_start, /* ev_now() is wall-clock time */
        .client = peer,
        .method = t->lmeth,
        .method_len = strlen(t->lmeth),
        .path = t->lpath,
        .path_len = t->lpath_len,
        .status = t->status,
        .bytes = t->resp_bytes,
        .pool = t->rt && t->pool >= 0 ? t->rt->cfg->pools[t->pool].name : NULL,
        .backend = t->be ? t->be->name : NULL,
        .upstream_ms = t->t_resp > 0 && t->t_sent > 0 ? (t->t_resp - t->t_sent) * 1000 : -1,
        .total_ms = (now - t->t_start) * 1000,
        .request_id = t->rid,
        .host = t->lhost,
        .user_agent = t->lua,
        .http_minor = t->minor,
        .retries = t->attempts,
        .termination = txn_termination(t),
        .tls_version = ssl ? SSL_get_version(ssl) : NULL,
        .tls_cipher = ssl ? SSL_get_cipher_name(ssl) : NULL,
        .tls_sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL,
    };
    access_write(&r);
}

enum rt_resp_class txn_resp_class(int status)
{
    if (status < 200)
        return RC_1XX;
    if (status < 300)
        return RC_2XX;
    if (status < 400)
        return RC_3XX;
    if (status < 500)
        return RC_4XX;
    return RC_5XX;
}
