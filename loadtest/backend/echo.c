/*
 * echo.c - /echo: a JSON description of the request, sent after its body
 * was read and hashed.
 *
 * The JSON is a sequence of pieces: literal text, or request bytes (method,
 * target, header names and values) that are escaped on the way out. It is
 * generated twice from the same cursor code: once counting, for the
 * Content-Length, then into the out queue as room allows. Nothing is copied
 * aside; the pieces point into the request head, which stays in the
 * in-buffer until the answer is complete. A request head of 16 KiB can grow
 * to six times that when escaped, so the generator must be resumable.
 *
 * Escaping: '"' and '\' get a backslash; bytes below 0x20 and from 0x7f up
 * become \u00XX (bytes >= 0x80 are read as Latin-1, so the output is always
 * valid JSON).
 */
#include <stdio.h>
#include <string.h>

#include "loadtest/backend/backend.h"

struct bk_echo_piece {
    const char *p;
    size_t len;
    bool esc; /* request bytes, escaped on output */
};

#define ECHO_LIT(s)    ((struct bk_echo_piece){(s), sizeof(s) - 1, false})
#define ECHO_ESC(s, n) ((struct bk_echo_piece){(s), (n), true})

#define ECHO_HEAD_PIECES   5 /* before the headers */
#define ECHO_HEADER_PIECES 5 /* per header */

static bool bk_echo_header_piece(const struct h1_header *h, uint32_t k, struct bk_echo_piece *pc)
{
    switch (k % ECHO_HEADER_PIECES) {
    case 0:
        *pc = k ? ECHO_LIT(",[\"") : ECHO_LIT("[\"");
        break;
    case 1:
        *pc = ECHO_ESC(h->name, h->name_len);
        break;
    case 2:
        *pc = ECHO_LIT("\",\"");
        break;
    case 3:
        *pc = ECHO_ESC(h->value, h->value_len);
        break;
    default:
        *pc = ECHO_LIT("\"]");
    }
    return true;
}

/* Piece k of the JSON; false past the end. */
static bool bk_echo_piece(const struct bk_conn *c, uint32_t k, struct bk_echo_piece *pc)
{
    const struct h1_request *q = &c->req;
    uint32_t nh = (uint32_t)q->nheaders * ECHO_HEADER_PIECES;

    switch (k) {
    case 0:
        *pc = ECHO_LIT("{\"method\":\"");
        return true;
    case 1:
        *pc = ECHO_ESC(q->method, q->method_len);
        return true;
    case 2:
        *pc = ECHO_LIT("\",\"path\":\"");
        return true;
    case 3:
        *pc = ECHO_ESC(q->target, q->target_len);
        return true;
    case 4:
        *pc = q->minor ? ECHO_LIT("\",\"version\":\"HTTP/1.1\",\"headers\":[")
                       : ECHO_LIT("\",\"version\":\"HTTP/1.0\",\"headers\":[");
        return true;
    }
    k -= ECHO_HEAD_PIECES;
    if (k < nh)
        return bk_echo_header_piece(&q->headers[k / ECHO_HEADER_PIECES], k, pc);
    switch (k - nh) {
    case 0:
        *pc = (struct bk_echo_piece){c->echo_tail, strlen(c->echo_tail), false};
        return true;
    case 1:
        *pc = ECHO_ESC(c->small, strlen(c->small)); /* the remote address */
        return true;
    case 2:
        *pc = ECHO_LIT("\"}\n");
        return true;
    }
    return false;
}

/* Size of byte ch escaped; written at dst unless dst is NULL. */
static size_t bk_echo_escape(unsigned char ch, char *dst)
{
    static const char hex[] = "0123456789abcdef";

    if (ch == '"' || ch == '\\') {
        if (dst)
            dst[0] = '\\', dst[1] = (char)ch;
        return 2;
    }
    if (ch >= 0x20 && ch < 0x7f) {
        if (dst)
            dst[0] = (char)ch;
        return 1;
    }
    if (dst) {
        memcpy(dst, "\\u00", 4);
        dst[4] = hex[ch >> 4];
        dst[5] = hex[ch & 15];
    }
    return 6;
}

size_t bk_echo_emit(struct bk_conn *c, char *dst, size_t cap)
{
    struct bk_exchange *x = &c->x;
    struct bk_echo_piece pc;
    size_t n = 0;

    while (bk_echo_piece(c, x->bk_echo_piece, &pc)) {
        while (x->echo_off < pc.len) {
            unsigned char ch = (unsigned char)pc.p[x->echo_off];
            size_t k = pc.esc ? bk_echo_escape(ch, NULL) : 1;

            if (n + k > cap)
                return n;
            if (dst && pc.esc)
                bk_echo_escape(ch, dst + n);
            else if (dst)
                dst[n] = (char)ch;
            n += k;
            x->echo_off++;
        }
        x->bk_echo_piece++;
        x->echo_off = 0;
    }
    return n;
}

static void bk_echo_hex(const unsigned char *md, unsigned len, char *dst)
{
    static const char hex[] = "0123456789abcdef";

    for (unsigned i = 0; i < len; i++) {
        dst[2 * i] = hex[md[i] >> 4];
        dst[2 * i + 1] = hex[md[i] & 15];
    }
    dst[2 * len] = '\0';
}

int bk_echo_start(struct bk_conn *c)
{
    struct bk_exchange *x = &c->x;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    size_t total;

    if (EVP_DigestFinal_ex(c->sha, md, &mdlen) != 1)
        return bk_resp_simple(c, 500, NULL);
    bk_echo_hex(md, mdlen, hex);
    bk_lsn_format(&c->peer, c->peer_len, c->small, sizeof(c->small));
    snprintf(c->echo_tail, sizeof(c->echo_tail),
             "],\"body_length\":%llu,\"body_sha256\":\"%s\",\"backend\":\"%s\","
             "\"connection_requests\":%u,\"remote\":\"",
             (unsigned long long)x->body_len, hex, c->w->srv->cfg.name, c->nreq);
    x->bk_echo_piece = x->echo_off = 0;
    total = bk_echo_emit(c, NULL, SIZE_MAX);
    x->bk_echo_piece = x->echo_off = 0;
    bk_resp_json_head(c, 200, total);
    if (!x->head_only) {
        x->kind = RESP_ECHO;
        x->left = total;
    }
    return STEP_NEXT;
}
