/*
 * ws.c - /ws: the upgrade handshake (RFC 6455 section 4) and an echo server
 * for the frames that follow.
 *
 * Frames are streamed, not collected: a frame's header is echoed as soon as
 * it is read (unmasked, same FIN bit and opcode, same length) and its
 * payload is unmasked from the in-buffer straight into the out queue as
 * room allows, so a frame of any size takes no extra memory. Fragmented
 * messages are echoed fragment by fragment. Ping is answered with a pong of
 * the same payload, a pong is dropped, and a close frame is echoed before
 * the connection closes. Protocol errors (reserved bits, an unmasked client
 * frame, an unknown opcode, a fragmented or long control frame) get a close
 * frame with status 1002.
 */
#include <string.h>

#include "loadtest/backend/backend.h"

#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_MAX 64
#define WS_FIN     0x80

enum ws_opcode {
    WS_CONT = 0x0,
    WS_TEXT = 0x1,
    WS_BINARY = 0x2,
    WS_CLOSE = 0x8,
    WS_PING = 0x9,
    WS_PONG = 0xa,
};

/* base64(SHA-1(key GUID)) into dst (29 bytes with the NUL). */
static int bk_ws_accept_key(const char *key, size_t len, char *dst)
{
    char buf[WS_KEY_MAX + sizeof(WS_GUID)];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    memcpy(buf, key, len);
    memcpy(buf + len, WS_GUID, sizeof(WS_GUID) - 1);
    if (EVP_Digest(buf, len + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)dst, md, (int)mdlen);
    return 0;
}

static bool bk_ws_is_upgrade(const struct bk_conn *c, int up, int key)
{
    const struct h1_request *q = &c->req;

    return q->upgrade && q->minor == 1 && !c->x.head_only && up >= 0 && key >= 0 &&
           h1_list_has(q->headers[up].value, q->headers[up].value_len, "websocket") &&
           q->headers[key].value_len > 0 && q->headers[key].value_len <= WS_KEY_MAX;
}

int bk_ws_start(struct bk_conn *c)
{
    static const char hdrs[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: ";
    int up = bk_conn_header(c, "upgrade"), key = bk_conn_header(c, "sec-websocket-key");
    char accept[32];
    const struct h1_header *k;

    if (!bk_ws_is_upgrade(c, up, key))
        return bk_resp_simple(c, 400, NULL);
    k = &c->req.headers[key];
    if (bk_ws_accept_key(k->value, k->value_len, accept) == -1)
        return bk_resp_simple(c, 500, NULL);
    bk_resp_begin(c, 101);
    bk_conn_out_put(c, hdrs, sizeof(hdrs) - 1);
    bk_conn_out_put(c, accept, strlen(accept));
    bk_conn_out_put(c, "\r\n\r\n", 4);
    c->head_len = 0;
    c->ws_in_frame = false;
    c->phase = CONN_WS;
    return STEP_NEXT;
}

static void bk_ws_put_header(struct bk_conn *c, uint8_t first, uint64_t len)
{
    uint8_t h[10];
    size_t n = 2;

    h[0] = first;
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    bk_conn_out_put(c, h, n);
}

static int bk_ws_fail(struct bk_conn *c)
{
    static const uint8_t frame[] = {WS_FIN | WS_CLOSE, 2, 0x03, 0xea}; /* 1002 */

    bk_conn_log(c, "websocket protocol error");
    bk_conn_out_put(c, frame, sizeof(frame));
    c->phase = CONN_CLOSING;
    return STEP_NEXT;
}

/* Bytes of the frame header starting at p, given at least 2 of them. */
static size_t bk_ws_header_len(const uint8_t *p)
{
    size_t n = 2 + ((p[1] & 0x80) ? 4 : 0);

    if ((p[1] & 0x7f) == 126)
        n += 2;
    else if ((p[1] & 0x7f) == 127)
        n += 8;
    return n;
}

static bool bk_ws_opcode_ok(uint8_t op)
{
    return op == WS_CONT || op == WS_TEXT || op == WS_BINARY || op == WS_CLOSE || op == WS_PING ||
           op == WS_PONG;
}

/* Wait for a whole header; keep the partial one where a read can complete it. */
static int bk_ws_need_more(struct bk_conn *c)
{
    size_t have = c->in_end - c->in_start;

    if (c->in_start > 0 && BK_IN_SIZE - c->in_end < 16) {
        memmove(c->in, c->in + c->in_start, have);
        c->in_start = 0;
        c->in_end = (uint32_t)have;
    }
    return STEP_READ;
}

static int bk_ws_header(struct bk_conn *c)
{
    const uint8_t *p = (const uint8_t *)c->in + c->in_start;
    size_t avail = c->in_end - c->in_start, n;
    uint64_t len;
    uint8_t op;

    if (bk_conn_out_room(c) < 16)
        return STEP_WRITE;
    if (avail < 2 || avail < (n = bk_ws_header_len(p)))
        return bk_ws_need_more(c);
    op = p[0] & 0x0f;
    len = p[1] & 0x7f;
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
    }
    if ((p[0] & 0x70) || !(p[1] & 0x80) || !bk_ws_opcode_ok(op) || (len >> 63) ||
        (op >= WS_CLOSE && (!(p[0] & WS_FIN) || len > 125)))
        return bk_ws_fail(c);
    memcpy(c->ws_mask, p + n - 4, 4);
    c->ws_moff = 0;
    c->ws_left = len;
    c->ws_op = op == WS_PING ? WS_PONG : op;
    c->ws_discard = op == WS_PONG;
    c->ws_in_frame = true;
    if (!c->ws_discard)
        bk_ws_put_header(c, (uint8_t)((p[0] & WS_FIN) | c->ws_op), len);
    c->in_start += (uint32_t)n;
    return STEP_NEXT;
}

static int bk_ws_payload(struct bk_conn *c)
{
    const uint8_t *src = (const uint8_t *)c->in + c->in_start;
    size_t n = c->in_end - c->in_start;

    if (n > c->ws_left)
        n = (size_t)c->ws_left;
    if (!c->ws_discard) {
        size_t room = bk_conn_out_room(c);
        uint8_t *dst = (uint8_t *)c->out + c->out_end;

        if (room == 0)
            return STEP_WRITE;
        n = n < room ? n : room;
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i] ^ c->ws_mask[(c->ws_moff + i) & 3];
        c->out_end += (uint32_t)n;
    }
    c->in_start += (uint32_t)n;
    c->ws_left -= n;
    c->ws_moff = (uint8_t)((c->ws_moff + n) & 3);
    return STEP_NEXT;
}

int bk_ws_step(struct bk_conn *c)
{
    if (!c->ws_in_frame)
        return bk_ws_header(c);
    if (c->ws_left == 0) {
        c->ws_in_frame = false;
        if (c->ws_op == WS_CLOSE)
            c->phase = CONN_CLOSING;
        return STEP_NEXT;
    }
    if (c->in_start == c->in_end) {
        c->in_start = c->in_end = 0;
        return STEP_READ;
    }
    return bk_ws_payload(c);
}
