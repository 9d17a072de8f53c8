/*
 * h1.c - HTTP/1.1 message parsing (RFC 9112), strict, without copies.
 *
 * A head is handled in two passes. The first (find_head_end) looks for the
 * CRLFCRLF that ends it, resuming at *scanned, and fails fast on a bare CR or
 * a bare LF. The second runs once, on the complete head, and validates every
 * byte with the class table below. It relies on the first pass: inside the
 * head every CR is followed by LF and every LF follows a CR, and the head ends
 * with CRLFCRLF, so a loop that stops at the first byte outside its class
 * stops at a CR at the latest and never reads past the head.
 */
#include "lb/core/h1.h"

#include <limits.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define H1_MAX_EMPTY_LINES 4            /* CRLFs skipped before a request line */
#define H1_MAX_LENGTH      (1ull << 62) /* largest Content-Length and chunk size */
#define H1_CHUNK_LINE_MAX  4096         /* chunk-size line with extensions and CRLF */
#define H1_TRAILER_MAX     16384        /* trailer section with its final CRLF */

/* Character classes (RFC 9110 5.6.2, 5.5, RFC 3986). */
#define C_TCHAR  0x01 /* token */
#define C_FIELD  0x02 /* field-value: SP, HTAB, VCHAR, obs-text */
#define C_TARGET 0x04 /* request-target: VCHAR except '#' */
#define C_HEX    0x08
#define C_HOST   0x10 /* reg-name: unreserved, sub-delims, '%' */
#define C_QDTEXT 0x20 /* quoted-string text: field-value minus '"' and '\' */

static const uint8_t cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  34, 0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    34, 55, 6,  35, 55, 55, 55, 55, 54, 54, 55, 55, 54, 55, 55, 38, /* 0x20 */
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 38, 54, 38, 54, 38, 38, /* 0x30 */
    38, 63, 63, 63, 63, 63, 63, 55, 55, 55, 55, 55, 55, 55, 55, 55, /* 0x40 */
    55, 55, 55, 55, 55, 55, 55, 55, 55, 55, 55, 38, 6,  38, 39, 55, /* 0x50 */
    39, 63, 63, 63, 63, 63, 63, 55, 55, 55, 55, 55, 55, 55, 55, 55, /* 0x60 */
    55, 55, 55, 55, 55, 55, 55, 55, 55, 55, 55, 38, 39, 38, 55, 0,  /* 0x70 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0x80 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0x90 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xa0 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xb0 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xc0 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xd0 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xe0 */
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, /* 0xf0 */
};

static inline bool is(const char *p, unsigned mask)
{
    return cls[(uint8_t)*p] & mask;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

/* a[0..n) equals the lowercase C string s, ignoring the case of a. */
static bool ci_eq(const char *a, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] == '\0' || lower((unsigned char)a[i]) != (unsigned char)s[i])
            return false;
    return s[i] == '\0';
}

/*
 * Next element of a comma-separated list at *p..end, OWS trimmed; it may be
 * empty. *p is the cursor (NULL once the list is exhausted, then this returns
 * false). An empty list yields one empty element, so "" and "a," both show an
 * empty element to strict callers.
 */
static bool list_next(const char **p, const char *end, const char **el, size_t *n)
{
    const char *s = *p, *e;

    if (!s)
        return false;
    e = memchr(s, ',', (size_t)(end - s));
    *p = e ? e + 1 : NULL;
    if (!e)
        e = end;
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    *el = s;
    *n = (size_t)(e - s);
    return true;
}

static bool all_tchar(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is(s + i, C_TCHAR))
            return false;
    return n > 0;
}

/* ---- finding the end of a head ----------------------------------------- */

/*
 * Skip the empty lines RFC 9112 2.2 lets a server ignore before a request
 * line. Sets *start to the first byte of the request line (or where it will
 * be). H1_ERROR after more than H1_MAX_EMPTY_LINES of them.
 */
static int skip_empty_lines(const char *buf, size_t len, size_t *start)
{
    size_t s = 0;

    while (s + 1 < len && buf[s] == '\r' && buf[s + 1] == '\n') {
        if (s == 2 * H1_MAX_EMPTY_LINES)
            return H1_ERROR;
        s += 2;
    }
    *start = s;
    return 0;
}

/* The first CR or LF in [p, stop), or NULL: sixteen bytes at a time where
 * SSE2 is there, never reading outside [p, stop). */
static const char *find_cr_or_lf(const char *p, const char *stop)
{
#ifdef __SSE2__
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; stop - p >= 16; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m =
            (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (m)
            return p + __builtin_ctz(m);
    }
#endif
    for (; p < stop; p++)
        if (*p == '\r' || *p == '\n')
            return p;
    return NULL;
}

/*
 * Look for the CRLFCRLF that ends the head starting at buf[start], examining
 * only bytes from *scanned on. A resume point never splits a CRLF: a CR at the
 * very end of the input is examined again on the next call. Earlier bytes are
 * only looked back at, which is why nothing else needs to be carried over.
 * Returns 0 and sets *end (the head's length from buf), H1_INCOMPLETE, or
 * H1_ERROR on a bare CR or bare LF.
 */
static int find_head_end(const char *buf, size_t len, size_t start, size_t *scanned, size_t *end)
{
    const char *p = buf + (*scanned > start ? *scanned : start);
    const char *stop = buf + len;

    while ((p = find_cr_or_lf(p, stop)) != NULL) {
        if (*p == '\n')
            return H1_ERROR; /* bare LF */
        if (p + 1 == stop) {
            *scanned = (size_t)(p - buf);
            return H1_INCOMPLETE;
        }
        const char *lf = p + 1;
        if (*lf != '\n')
            return H1_ERROR; /* bare CR */
        if ((size_t)(lf - buf) >= start + 3 && lf[-2] == '\n' && lf[-3] == '\r') {
            *end = (size_t)(lf + 1 - buf);
            *scanned = *end;
            return *end > INT_MAX ? H1_ERROR : 0;
        }
        p = lf + 1;
    }
    *scanned = len;
    return H1_INCOMPLETE;
}

/* ---- header fields and what they mean for framing ---------------------- */

/* Framing and connection facts collected from the header fields. */
struct fields {
    uint64_t cl;   /* Content-Length value, when has_cl */
    unsigned conn; /* H1_CONN_* */
    int host;      /* index of Host, -1 if none */
    bool has_cl;
    bool has_te;
    bool te_chunked; /* the last transfer coding so far is chunked */
    bool te_seen_chunked;
    bool te_other; /* a coding other than chunked was seen */
    bool expect_continue;
    bool has_upgrade;
    bool response; /* skip the request-only checks (Host) */
};

/*
 * Content-Length: 1#(1*DIGIT) with all elements equal, and equal to any
 * earlier Content-Length field. No sign, no empty element, at most 2^62.
 */
static int field_content_length(struct fields *f, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *el;
    size_t len;

    while (list_next(&p, end, &el, &len)) {
        uint64_t x = 0;

        if (len == 0)
            return H1_ERROR;
        for (size_t i = 0; i < len; i++) {
            unsigned d = (unsigned)(uint8_t)el[i] - '0';

            if (d > 9 || x > (H1_MAX_LENGTH - d) / 10)
                return H1_ERROR;
            x = x * 10 + d;
        }
        if (f->has_cl && x != f->cl)
            return H1_ERROR;
        f->cl = x;
        f->has_cl = true;
    }
    return 0;
}

/*
 * Transfer-Encoding: 1#token, across repeated fields. Codings with parameters
 * and empty elements are refused; "chunked" may appear once. Whether it must
 * be last is decided by the caller (error for a request, close-delimited for
 * a response).
 */
static int field_transfer_encoding(struct fields *f, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *el;
    size_t len;

    f->has_te = true;
    while (list_next(&p, end, &el, &len)) {
        if (!all_tchar(el, len))
            return H1_ERROR;
        f->te_chunked = ci_eq(el, len, "chunked");
        if (f->te_chunked && f->te_seen_chunked)
            return H1_ERROR;
        f->te_seen_chunked |= f->te_chunked;
        f->te_other |= !f->te_chunked;
    }
    return 0;
}

static void field_connection(struct fields *f, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *el;
    size_t len;

    while (list_next(&p, end, &el, &len)) {
        if (ci_eq(el, len, "close"))
            f->conn |= H1_CONN_CLOSE;
        else if (ci_eq(el, len, "keep-alive"))
            f->conn |= H1_CONN_KEEP_ALIVE;
        else if (ci_eq(el, len, "upgrade"))
            f->conn |= H1_CONN_UPGRADE;
    }
}

/* Port: at most 5 digits, possibly none (RFC 3986 port = *DIGIT). */
static bool valid_port(const char *p, const char *end)
{
    if (end - p > 5)
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/*
 * Host: empty (allowed by RFC 9110 7.2), or uri-host [ ":" port ] where
 * uri-host is "[" hex, ':' and '.' "]" or a non-empty reg-name.
 */
static bool valid_host(const char *v, size_t n)
{
    const char *p = v, *end = v + n;

    if (n == 0)
        return true;
    if (*p == '[') {
        for (p++; p < end && *p != ']'; p++)
            if (!is(p, C_HEX) && *p != ':' && *p != '.')
                return false;
        if (p == end || p == v + 1)
            return false;
        p++;
    } else {
        while (p < end && is(p, C_HOST))
            p++;
        if (p == v)
            return false;
    }
    if (p == end)
        return true;
    return *p == ':' && valid_port(p + 1, end);
}

/* Is H's name LOWER (a string literal of its length's case below)? */
#define NAME_IS(h, lower) h1_token_eq_lower((h)->name, lower, sizeof(lower) - 1)

/* Fold one header field into f. idx is its index in the headers array. The
 * switch on the name's length has already matched the length. */
static int field_apply(struct fields *f, const struct h1_header *h, int idx)
{
    const char *v = h->value;
    size_t n = h->value_len;

    switch (h->name_len) {
    case 4:
        if (f->response || !NAME_IS(h, "host"))
            return 0;
        if (f->host >= 0 || !valid_host(v, n))
            return H1_ERROR;
        f->host = idx;
        return 0;
    case 6:
        if (NAME_IS(h, "expect") && ci_eq(v, n, "100-continue"))
            f->expect_continue = true;
        return 0;
    case 7:
        if (NAME_IS(h, "upgrade"))
            f->has_upgrade = true;
        return 0;
    case 10:
        if (NAME_IS(h, "connection"))
            field_connection(f, v, n);
        return 0;
    case 14:
        return NAME_IS(h, "content-length") ? field_content_length(f, v, n) : 0;
    case 17:
        return NAME_IS(h, "transfer-encoding") ? field_transfer_encoding(f, v, n) : 0;
    default:
        return 0;
    }
}

/*
 * Parse one field line at *pp: token ":" OWS field-value OWS CRLF. No
 * whitespace before the colon, none at the start of the line (obs-fold).
 */
static int parse_field(const char **pp, struct h1_header *h)
{
    const char *p = *pp, *name = p, *v, *e;

    while (is(p, C_TCHAR))
        p++;
    if (p == name || *p != ':')
        return H1_ERROR;
    h->name = name;
    h->name_len = (uint32_t)(p - name);
    for (p++; is_ows(*p); p++)
        ;
    for (v = p; is(p, C_FIELD); p++)
        ;
    if (*p != '\r')
        return H1_ERROR;
    for (e = p; e > v && is_ows(e[-1]); e--)
        ;
    h->value = v;
    h->value_len = (uint32_t)(e - v);
    *pp = p + 2;
    return 0;
}

/*
 * Parse the field lines at *pp up to and including the empty line that ends
 * the head. Returns 0, H1_ERROR or H1_TOO_MANY.
 */
static int parse_fields(const char **pp, struct h1_header *hs, int *nheaders, struct fields *f)
{
    const char *p = *pp;
    int n = 0, r;

    while (*p != '\r') {
        if (n == H1_MAX_HEADERS)
            return H1_TOO_MANY;
        r = parse_field(&p, &hs[n]);
        if (r == 0)
            r = field_apply(f, &hs[n], n);
        if (r)
            return r;
        n++;
    }
    *nheaders = n;
    *pp = p + 2;
    return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" at p (8 readable bytes): the minor version or -1. */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return -1;
    return p[7] - '0';
}

/* ---- requests ----------------------------------------------------------- */

/* Methods are case-sensitive (RFC 9110 9.1): "get" is H1_M_OTHER. */
static enum h1_method method_of(const char *m, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        enum h1_method meth;
    } tab[] = {
        {"GET", 3, H1_M_GET},     {"POST", 4, H1_M_POST},     {"HEAD", 4, H1_M_HEAD},
        {"PUT", 3, H1_M_PUT},     {"DELETE", 6, H1_M_DELETE}, {"OPTIONS", 7, H1_M_OPTIONS},
        {"PATCH", 5, H1_M_PATCH}, {"TRACE", 5, H1_M_TRACE},   {"CONNECT", 7, H1_M_CONNECT},
    };

    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].len == n && memcmp(tab[i].name, m, n) == 0)
            return tab[i].meth;
    return H1_M_OTHER;
}

/*
 * The authority of an absolute-form target at a..end: non-empty, a valid
 * host[:port], no userinfo (RFC 9110 4.2.4 says to treat it as an error).
 */
static bool valid_authority(const char *a, const char *end)
{
    const char *p = a;

    while (p < end && *p != '/' && *p != '?')
        p++;
    return p > a && valid_host(a, (size_t)(p - a));
}

/* origin-form, absolute-form (http/https) or, for OPTIONS, asterisk-form. */
static bool valid_target(const char *t, size_t n, enum h1_method meth)
{
    if (t[0] == '/')
        return true;
    if (n == 1 && t[0] == '*')
        return meth == H1_M_OPTIONS;
    if (n > 7 && ci_eq(t, 7, "http://"))
        return valid_authority(t + 7, t + n);
    if (n > 8 && ci_eq(t, 8, "https://"))
        return valid_authority(t + 8, t + n);
    return false;
}

/* method SP request-target SP HTTP-version CRLF */
static int parse_request_line(const char **pp, const char *end, struct h1_request *req)
{
    const char *p = *pp, *m = p, *t;

    while (is(p, C_TCHAR))
        p++;
    if (p == m || *p != ' ')
        return H1_ERROR;
    req->method = m;
    req->method_len = (size_t)(p - m);
    req->meth = method_of(m, req->method_len);
    for (t = ++p; is(p, C_TARGET); p++)
        ;
    if (p == t || *p != ' ')
        return H1_ERROR;
    req->target = t;
    req->target_len = (size_t)(p - t);
    if (req->meth == H1_M_CONNECT || !valid_target(t, req->target_len, req->meth))
        return H1_ERROR;
    p++;
    if (end - p < 10 || (req->minor = parse_version(p)) < 0 || p[8] != '\r')
        return H1_ERROR;
    *pp = p + 10;
    return 0;
}

/* Framing and connection handling of a request (RFC 9112 6.1, 6.3, 9.3). */
static int request_derive(struct h1_request *req, const struct fields *f)
{
    if (f->has_te) {
        /* only "chunked": a proxy that forwarded other codings would have to
         * trust the backend to decode them as we framed them */
        if (req->minor == 0 || f->has_cl || !f->te_chunked || f->te_other)
            return H1_ERROR;
        req->body = H1_BODY_CHUNKED;
    } else if (f->has_cl) {
        req->body = H1_BODY_LENGTH;
        req->content_length = f->cl;
    }
    if (req->minor == 1 && f->host < 0)
        return H1_ERROR;
    req->host = f->host;
    req->conn = f->conn;
    if (req->minor == 1)
        req->keep_alive = !(f->conn & H1_CONN_CLOSE);
    else
        req->keep_alive = (f->conn & (H1_CONN_CLOSE | H1_CONN_KEEP_ALIVE)) == H1_CONN_KEEP_ALIVE;
    /* RFC 9110 10.1.1 and 7.8: both are ignored in HTTP/1.0 requests. */
    req->expect_continue = req->minor == 1 && f->expect_continue;
    req->upgrade = req->minor == 1 && (f->conn & H1_CONN_UPGRADE) && f->has_upgrade;
    return 0;
}

static int parse_request_head(const char *p, const char *end, struct h1_request *req)
{
    struct fields f = {.host = -1};
    int r;

    req->nheaders = 0;
    req->body = H1_BODY_NONE;
    req->content_length = 0;
    r = parse_request_line(&p, end, req);
    if (r == 0)
        r = parse_fields(&p, req->headers, &req->nheaders, &f);
    if (r == 0)
        r = request_derive(req, &f);
    return r;
}

int h1_parse_request(const char *buf, size_t len, size_t *scanned, struct h1_request *req)
{
    size_t start, end;
    int r = skip_empty_lines(buf, len, &start);

    if (r == 0)
        r = find_head_end(buf, len, start, scanned, &end);
    if (r == 0)
        r = parse_request_head(buf + start, buf + end, req);
    return r ? r : (int)end;
}

/* ---- responses ---------------------------------------------------------- */

/* HTTP-version SP 3DIGIT [ SP reason-phrase ] CRLF (a missing SP tolerated) */
static int parse_status_line(const char **pp, const char *end, struct h1_response *resp)
{
    const char *p = *pp, *reason;

    /* "HTTP/1.1 200" CRLF CRLF is the shortest possible head */
    if (end - p < 16 || (resp->minor = parse_version(p)) < 0 || p[8] != ' ')
        return H1_ERROR;
    if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return H1_ERROR;
    resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    p += 12;
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        return H1_ERROR;
    for (reason = p; is(p, C_FIELD); p++)
        ;
    if (*p != '\r')
        return H1_ERROR;
    resp->reason = reason;
    resp->reason_len = (size_t)(p - reason);
    *pp = p + 2;
    return 0;
}

/* Framing of a response (RFC 9112 6.3). */
static int response_derive(struct h1_response *resp, const struct fields *f, bool head_request)
{
    int s = resp->status;

    if (f->has_te && resp->minor == 0)
        return H1_ERROR; /* RFC 9112 6.1: faulty framing */
    if (head_request || s < 200 || s == 204 || s == 304)
        resp->body = H1_BODY_NONE;
    else if (f->has_te)
        resp->body = f->te_chunked ? H1_BODY_CHUNKED : H1_BODY_CLOSE;
    else if (f->has_cl)
        resp->body = H1_BODY_LENGTH;
    else
        resp->body = H1_BODY_CLOSE;
    resp->content_length = resp->body == H1_BODY_LENGTH ? f->cl : 0;
    resp->conn = f->conn;
    if (resp->minor == 1)
        resp->keep_alive = !(f->conn & H1_CONN_CLOSE);
    else
        resp->keep_alive = (f->conn & (H1_CONN_CLOSE | H1_CONN_KEEP_ALIVE)) == H1_CONN_KEEP_ALIVE;
    if (resp->body == H1_BODY_CLOSE)
        resp->keep_alive = false;
    return 0;
}

static int parse_response_head(const char *p, const char *end, bool head_request,
                               struct h1_response *resp)
{
    struct fields f = {.host = -1, .response = true};
    int r;

    resp->nheaders = 0;
    r = parse_status_line(&p, end, resp);
    if (r == 0)
        r = parse_fields(&p, resp->headers, &resp->nheaders, &f);
    if (r == 0)
        r = response_derive(resp, &f, head_request);
    return r;
}

int h1_parse_response(const char *buf, size_t len, size_t *scanned, bool head_request,
                      struct h1_response *resp)
{
    size_t end;
    int r = find_head_end(buf, len, 0, scanned, &end);

    if (r == 0)
        r = parse_response_head(buf, buf + end, head_request, resp);
    return r ? r : (int)end;
}

/* ---- chunked bodies ----------------------------------------------------- */

/*
 * States of the decoder. The CS_SIZE..CS_SIZE_LF ones make up a chunk-size
 * line (counted in c->line), the CS_TR_* ones and CS_END_LF the trailer
 * section (counted in c->trailer).
 */
enum {
    CS_SIZE,        /* chunk-size digits; c->line - 1 of them so far */
    CS_EXT_END,     /* after the size or an extension: ';', BWS or CR */
    CS_EXT_WS,      /* BWS that must be followed by ';' */
    CS_EXT_NAME0,   /* after ';': BWS, then an ext-name */
    CS_EXT_NAME,    /* in an ext-name */
    CS_EXT_NAME_WS, /* BWS after an ext-name: '=' or ';' must follow */
    CS_EXT_VAL0,    /* after '=': BWS, then a token or a quoted-string */
    CS_EXT_VAL,     /* in a token ext-val */
    CS_EXT_QS,      /* in a quoted-string */
    CS_EXT_QP,      /* after a backslash in a quoted-string */
    CS_SIZE_LF,     /* CR seen at the end of the size line */
    CS_DATA,        /* c->left data bytes to go */
    CS_DATA_CR,     /* CRLF after the data */
    CS_DATA_LF,     /* its LF */
    CS_TR_START,    /* start of a trailer line, or of the final CRLF */
    CS_TR_NAME,     /* in a trailer field name */
    CS_TR_VAL,      /* in a trailer field value */
    CS_TR_LF,       /* LF ending a trailer line */
    CS_END_LF,      /* LF of the final CRLF */
    CS_DONE,        /* the body is over */
};

#define CS_ERR 0xff

void h1_chunk_init(struct h1_chunk *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CS_SIZE;
}

bool h1_chunk_done(const struct h1_chunk *c)
{
    return c->state == CS_DONE;
}

/* Next state of the chunk-size line and extensions after byte b. */
static uint8_t size_line_next(struct h1_chunk *c, const char *b)
{
    switch (c->state) {
    case CS_SIZE:
        if (is(b, C_HEX)) {
            unsigned d = (unsigned)(*b <= '9' ? *b - '0' : lower((unsigned char)*b) - 'a' + 10);

            if (c->line > 16 || c->left > (H1_MAX_LENGTH - d) >> 4)
                return CS_ERR;
            c->left = c->left << 4 | d;
            return CS_SIZE;
        }
        if (c->line == 1)
            return CS_ERR; /* no digit */
        c->state = CS_EXT_END;
        return size_line_next(c, b);
    case CS_EXT_END:
    case CS_EXT_VAL:
        if (*b == '\r')
            return CS_SIZE_LF;
        /* fallthrough */
    case CS_EXT_WS:
        if (is_ows(*b))
            return CS_EXT_WS;
        if (*b == ';')
            return CS_EXT_NAME0;
        return c->state == CS_EXT_VAL && is(b, C_TCHAR) ? CS_EXT_VAL : CS_ERR;
    case CS_EXT_NAME0:
        if (is_ows(*b))
            return CS_EXT_NAME0;
        return is(b, C_TCHAR) ? CS_EXT_NAME : CS_ERR;
    case CS_EXT_NAME:
        if (*b == '\r')
            return CS_SIZE_LF;
        if (is(b, C_TCHAR))
            return CS_EXT_NAME;
        /* fallthrough */
    case CS_EXT_NAME_WS:
        if (is_ows(*b))
            return CS_EXT_NAME_WS;
        if (*b == ';')
            return CS_EXT_NAME0;
        return *b == '=' ? CS_EXT_VAL0 : CS_ERR;
    case CS_EXT_VAL0:
        if (is_ows(*b))
            return CS_EXT_VAL0;
        if (*b == '"')
            return CS_EXT_QS;
        return is(b, C_TCHAR) ? CS_EXT_VAL : CS_ERR;
    case CS_EXT_QS:
        if (*b == '"')
            return CS_EXT_END;
        if (*b == '\\')
            return CS_EXT_QP;
        return is(b, C_QDTEXT) ? CS_EXT_QS : CS_ERR;
    case CS_EXT_QP:
        return is(b, C_FIELD) ? CS_EXT_QS : CS_ERR;
    case CS_SIZE_LF:
        if (*b != '\n')
            return CS_ERR;
        return c->left ? CS_DATA : CS_TR_START;
    default:
        return CS_ERR;
    }
}

/* Next state of the trailer section after byte b (field lines, final CRLF). */
static uint8_t trailer_next(const struct h1_chunk *c, const char *b)
{
    switch (c->state) {
    case CS_TR_START:
        if (*b == '\r')
            return CS_END_LF;
        return is(b, C_TCHAR) ? CS_TR_NAME : CS_ERR;
    case CS_TR_NAME:
        if (*b == ':')
            return CS_TR_VAL;
        return is(b, C_TCHAR) ? CS_TR_NAME : CS_ERR;
    case CS_TR_VAL:
        if (*b == '\r')
            return CS_TR_LF;
        return is(b, C_FIELD) ? CS_TR_VAL : CS_ERR;
    case CS_TR_LF:
        return *b == '\n' ? CS_TR_START : CS_ERR;
    case CS_END_LF:
        return *b == '\n' ? CS_DONE : CS_ERR;
    default:
        return CS_ERR;
    }
}

/*
 * Advance over one framing byte. Returns false on a protocol error, which
 * sticks: the state becomes CS_ERR.
 */
static bool framing_byte(struct h1_chunk *c, const char *b)
{
    uint8_t next;

    if (c->state <= CS_SIZE_LF) {
        next = ++c->line > H1_CHUNK_LINE_MAX ? CS_ERR : size_line_next(c, b);
    } else if (c->state == CS_DATA_CR) {
        next = *b == '\r' ? CS_DATA_LF : CS_ERR;
    } else if (c->state == CS_DATA_LF) {
        next = *b == '\n' ? CS_SIZE : CS_ERR;
    } else {
        c->line++;
        next = ++c->trailer > H1_TRAILER_MAX ? CS_ERR : trailer_next(c, b);
    }
    if (next == CS_TR_START || (next == CS_SIZE && c->state == CS_DATA_LF))
        c->line = 0; /* a new line starts */
    c->state = next;
    return next != CS_ERR;
}

ssize_t h1_chunk_step(struct h1_chunk *c, const char *p, size_t len, enum h1_span *kind)
{
    size_t i;

    *kind = H1_SPAN_FRAMING;
    if (len == 0 || c->state == CS_DONE || c->state == CS_ERR)
        return c->state == CS_ERR ? H1_ERROR : 0;
    if (c->state == CS_DATA) {
        i = len < c->left ? len : (size_t)c->left;
        c->left -= i;
        if (c->left == 0)
            c->state = CS_DATA_CR;
        *kind = H1_SPAN_DATA;
        return (ssize_t)i;
    }
    for (i = 0; i < len && c->state != CS_DATA && c->state != CS_DONE; i++)
        if (!framing_byte(c, p + i))
            return H1_ERROR;
    return (ssize_t)i;
}

/* ---- helpers ------------------------------------------------------------ */

bool h1_name_is(const struct h1_header *h, const char *name)
{
    size_t i;

    if (h->name_len == 0)
        return name[0] == '\0';
    if (lower((unsigned char)h->name[0]) != lower((unsigned char)name[0]))
        return false; /* most fields differ in the first byte: stop there */
    for (i = 0; i < h->name_len; i++)
        if (name[i] == '\0' || lower((unsigned char)h->name[i]) != lower((unsigned char)name[i]))
            return false;
    return name[i] == '\0';
}

bool h1_list_has(const char *v, size_t len, const char *token)
{
    const char *p = v, *end = v + len, *el;
    size_t n, tlen = strlen(token);

    while (list_next(&p, end, &el, &n)) {
        size_t i = 0;

        if (n != tlen)
            continue;
        while (i < n && lower((unsigned char)el[i]) == lower((unsigned char)token[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

const char *h1_reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } tab[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };

    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].status == status)
            return tab[i].text;
    return "Unknown";
}
