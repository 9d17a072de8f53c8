/*
 * rewrite.c - request and response heads as the proxy sends them (see rewrite.h).
 */
#include "lb/rewrite.h"

#include <string.h>

/* Headers the proxy treats specially, recognised once per header by length first. */
enum hdr_kind {
    HK_OTHER,
    HK_CONNECTION,
    HK_KEEP_ALIVE,
    HK_PROXY_CONNECTION,
    HK_TE,
    HK_UPGRADE,
    HK_HOST,
    HK_CONTENT_LENGTH,
    HK_TRANSFER_ENCODING,
    HK_XFF,
    HK_XFP,
    HK_XF_OTHER, /* any other X-Forwarded-*, X-Real-IP, Forwarded */
    HK_REQUEST_ID,
};

/* Header names are tokens and the names below lowercase letters and '-'. */
#define name_eq h1_token_eq_lower

static enum hdr_kind hdr_kind(const struct h1_header *h)
{
    static const struct {
        const char *name;
        enum hdr_kind kind;
    } by_len[][2] = {
        [2] = {{"te", HK_TE}},
        [4] = {{"host", HK_HOST}},
        [7] = {{"upgrade", HK_UPGRADE}},
        [9] = {{"forwarded", HK_XF_OTHER}, {"x-real-ip", HK_XF_OTHER}},
        [10] = {{"connection", HK_CONNECTION}, {"keep-alive", HK_KEEP_ALIVE}},
        [12] = {{"x-request-id", HK_REQUEST_ID}},
        [14] = {{"content-length", HK_CONTENT_LENGTH}},
        [15] = {{"x-forwarded-for", HK_XFF}},
        [16] = {{"proxy-connection", HK_PROXY_CONNECTION}},
        [17] = {{"transfer-encoding", HK_TRANSFER_ENCODING}, {"x-forwarded-proto", HK_XFP}},
    };
    size_t n = h->name_len;
    if (n < sizeof(by_len) / sizeof(by_len[0]))
        for (int i = 0; i < 2 && by_len[n][i].name; i++)
            if (name_eq(h->name, by_len[n][i].name, n))
                return by_len[n][i].kind;
    if (n > 12 && (h->name[0] | 0x20) == 'x' && name_eq(h->name, "x-forwarded-", 12))
        return HK_XF_OTHER;
    return HK_OTHER;
}

static bool request_id_ok(const struct h1_header *h)
{
    if (h->value_len == 0 || h->value_len > RW_REQID_MAX)
        return false;
    for (uint32_t j = 0; j < h->value_len; j++) {
        unsigned char ch = (unsigned char)h->value[j];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            return false;
    }
    return true;
}

void rw_scan(const struct h1_header *hs, int n, bool request, struct rw_scan *sc)
{
    sc->nconn = 0;
    sc->request_id = -1;
    for (int i = 0; i < n; i++) {
        enum hdr_kind k = hdr_kind(&hs[i]);
        sc->kind[i] = (uint8_t)k;
        if (k == HK_CONNECTION && sc->nconn < 4)
            sc->conn[sc->nconn++] = &hs[i];
        else if (k == HK_REQUEST_ID && request && sc->request_id < 0 && request_id_ok(&hs[i]))
            sc->request_id = i;
    }
}

/*
 * Is header H hop-by-hop for this message (fixed list or named in
 * Connection)? The framing headers and Host are never dropped because a
 * Connection header names them: that would let a client desynchronise us
 * from the backend.
 */
static bool is_hop_header(const struct h1_header *h, enum hdr_kind k, const struct rw_scan *cl)
{
    if (k == HK_CONNECTION || k == HK_KEEP_ALIVE || k == HK_PROXY_CONNECTION || k == HK_TE ||
        k == HK_UPGRADE)
        return true;
    if (!cl->nconn || k == HK_CONTENT_LENGTH || k == HK_TRANSFER_ENCODING || k == HK_HOST)
        return false;
    for (int i = 0; i < cl->nconn; i++) {
        char name[128];
        if (h->name_len >= sizeof(name))
            continue;
        memcpy(name, h->name, h->name_len);
        name[h->name_len] = 0;
        if (h1_list_has(cl->conn[i]->value, cl->conn[i]->value_len, name))
            return true;
    }
    return false;
}

static inline bool put(struct buf *b, const char *s, size_t n)
{
    return buf_append(b, s, n);
}

static inline bool puts_(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

static bool put_header(struct buf *b, const struct h1_header *h)
{
    return put(b, h->name, h->name_len) && put(b, ": ", 2) && put(b, h->value, h->value_len) &&
           put(b, "\r\n", 2);
}

/* "NAME: N\r\n" for a decimal N, without printf. */
static bool put_number_header(struct buf *b, const char *name, uint64_t n)
{
    char digits[20];
    int i = (int)sizeof(digits);
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    return puts_(b, name) && put(b, digits + i, sizeof(digits) - (size_t)i) && put(b, "\r\n", 2);
}

static bool request_line(struct buf *b, const struct h1_request *req, const struct route_target *t)
{
    bool ok = put(b, req->method, req->method_len) && put(b, " ", 1);
    if (t->absolute)
        ok = ok && (!t->slash || put(b, "/", 1)) && put(b, t->path, t->path_len);
    else
        ok = ok && put(b, req->target, req->target_len);
    ok = ok && puts_(b, " HTTP/1.1\r\n");
    if (ok && t->absolute) /* the authority replaces whatever Host was received */
        ok = puts_(b, "Host: ") && put(b, t->host, t->host_len) && put(b, "\r\n", 2);
    return ok;
}

bool rw_request_head(struct buf *b, const struct h1_request *req, const struct rw_request *rq)
{
    uint32_t w0 = b->w;
    bool ok = request_line(b, req, rq->target);
    const struct h1_header *xff[8], *xfp = NULL;
    int nxff = 0;
    struct rw_scan own;
    const struct rw_scan *cl = rq->scan;
    if (!cl) {
        rw_scan(req->headers, req->nheaders, true, &own);
        cl = &own;
    }
    for (int i = 0; i < req->nheaders && ok; i++) {
        const struct h1_header *h = &req->headers[i];
        enum hdr_kind k = cl->kind[i];
        switch (k) {
        case HK_XFF:
            if (rq->trusted && nxff < 8)
                xff[nxff++] = h;
            continue;
        case HK_XFP:
            if (rq->trusted && !xfp)
                xfp = h;
            continue;
        case HK_XF_OTHER:
            if (!rq->trusted)
                continue;
            break;
        case HK_REQUEST_ID:
        case HK_CONTENT_LENGTH:    /* ours below, one of them */
        case HK_TRANSFER_ENCODING: /* ditto */
            continue;
        case HK_HOST:
            if (rq->target->absolute)
                continue;
            break;
        case HK_UPGRADE:
            if (rq->upgrade)
                goto keep; /* the backend must see what is asked for */
            break;
        default:
            break;
        }
        if (memchr(h->name, '_', h->name_len) || is_hop_header(h, k, cl))
            continue;
    keep:
        ok = put_header(b, h);
    }
    if (ok && req->body == H1_BODY_LENGTH)
        ok = put_number_header(b, "Content-Length: ", req->content_length);
    else if (ok && req->body == H1_BODY_CHUNKED)
        ok = puts_(b, "Transfer-Encoding: chunked\r\n");
    if (ok && req->host < 0 && !rq->target->absolute) /* HTTP/1.0 without Host */
        ok = puts_(b, "Host: ") && puts_(b, rq->listen_addr) && puts_(b, "\r\n");
    ok = ok && puts_(b, "X-Forwarded-For: ");
    for (int i = 0; i < nxff && ok; i++)
        ok = put(b, xff[i]->value, xff[i]->value_len) && put(b, ", ", 2);
    ok = ok && puts_(b, rq->client_ip) && puts_(b, "\r\n");
    if (ok && xfp)
        ok = put_header(b, xfp);
    else if (ok)
        ok = puts_(b, rq->https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    ok = ok && puts_(b, "X-Request-Id: ") && put(b, rq->rid, rq->rid_len) && puts_(b, "\r\n");
    if (ok && rq->upgrade)
        ok = puts_(b, "Connection: Upgrade\r\n");
    ok = ok && puts_(b, "\r\n");
    if (!ok)
        b->w = w0;
    return ok;
}

bool rw_response_head(struct buf *b, const struct h1_response *resp, const struct rw_response *rs)
{
    uint32_t w0 = b->w;
    /* the status is 100..599 (the parser checked): three digits, no printf */
    char line[13] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + resp->status / 100);
    line[10] = (char)('0' + resp->status / 10 % 10);
    line[11] = (char)('0' + resp->status % 10);
    bool ok =
        put(b, line, sizeof(line)) && put(b, resp->reason, resp->reason_len) && put(b, "\r\n", 2);
    bool have_cl = false;
    struct rw_scan cl;
    rw_scan(resp->headers, resp->nheaders, false, &cl);
    for (int i = 0; i < resp->nheaders && ok; i++) {
        const struct h1_header *h = &resp->headers[i];
        enum hdr_kind k = cl.kind[i];
        if (k == HK_REQUEST_ID)
            continue;
        if (k == HK_TRANSFER_ENCODING) {
            /* chunked goes as received unless de-chunked; other codings of a
             * body that runs to the close ("gzip") tell an HTTP/1.1 client how
             * to decode it; an HTTP/1.0 client knows no transfer codings */
            if (rs->dechunk ||
                (resp->body != H1_BODY_CHUNKED && (resp->body != H1_BODY_CLOSE || rs->http10)))
                continue;
        } else if (k == HK_CONTENT_LENGTH) {
            /* chunked framing wins (RFC 9112 6.3); a length-delimited body gets
             * one normalised header below; otherwise (HEAD, 304) the first
             * one says what the body would be (the parser checked they agree) */
            if (resp->body == H1_BODY_CHUNKED || resp->body == H1_BODY_LENGTH || have_cl)
                continue;
            have_cl = true;
        } else if (k == HK_UPGRADE && resp->status == 101) {
            ; /* kept */
        } else if (is_hop_header(h, k, &cl)) {
            continue;
        }
        ok = put_header(b, h);
    }
    if (ok && resp->body == H1_BODY_LENGTH)
        ok = put_number_header(b, "Content-Length: ", resp->content_length);
    ok = ok && puts_(b, "X-Request-Id: ") && put(b, rs->rid, rs->rid_len) && puts_(b, "\r\n");
    if (resp->status == 101)
        ok = ok && puts_(b, "Connection: Upgrade\r\n");
    else if (rs->closing)
        ok = ok && puts_(b, "Connection: close\r\n");
    else if (rs->http10)
        ok = ok && puts_(b, "Connection: keep-alive\r\n");
    ok = ok && puts_(b, "\r\n");
    if (!ok)
        b->w = w0;
    return ok;
}

const struct h1_header *rw_client_request_id(const struct h1_request *req)
{
    struct rw_scan sc;
    rw_scan(req->headers, req->nheaders, true, &sc);
    return sc.request_id >= 0 ? &req->headers[sc.request_id] : NULL;
}
