/*
 * tls.c - building a configuration's TLS contexts; SNI, ALPN and session
 * tickets on the server side (see tls.h).
 */
#include "lb/tls.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* TLS 1.2: AEAD suites with forward secrecy (Mozilla's "intermediate" less DHE). */
#define TLS_DEFAULT_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS          "X25519:P-256:P-384"
#define TLS_CACHE_SIZE      20480 /* sessions per listener in the server's cache */
#define TLS_SESSION_TIMEOUT 7200  /* seconds a session or ticket may be resumed */

/* ---- ticket keys ------------------------------------------------------- */

static int key_fill(struct tls_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
                   RAND_bytes(k->hmac, sizeof(k->hmac)) == 1
               ? 0
               : -1;
}

int tls_keys_init(struct tls_keys *k)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    if (key_fill(&k->k[0]) == -1)
        return -1;
    k->n = 1;
    return 0;
}

void tls_keys_deinit(struct tls_keys *k)
{
    OPENSSL_cleanse(k->k, sizeof(k->k));
    pthread_mutex_destroy(&k->lock);
}

void tls_keys_rotate(struct tls_keys *k)
{
    struct tls_key fresh;
    if (key_fill(&fresh) == -1)
        return; /* keep the current key rather than none */
    pthread_mutex_lock(&k->lock);
    memmove(&k->k[1], &k->k[0], (TLS_TICKET_KEYS - 1) * sizeof(k->k[0]));
    k->k[0] = fresh;
    if (k->n < TLS_TICKET_KEYS)
        k->n++;
    pthread_mutex_unlock(&k->lock);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
}

/*
 * OpenSSL's ticket callback: enc = 1 seals a new ticket under the current
 * key; enc = 0 finds the key a ticket names. Returns 1 (use it), 2 (use it
 * and issue a fresh ticket: an older key), 0 (unknown key: full handshake)
 * or -1.
 */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    /* the keys live as long as the process: a context's app data outlives
     * any connection still using it */
    struct tls_keys *keys = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct tls_key k;
    int found = -1;
    pthread_mutex_lock(&keys->lock);
    if (enc) {
        k = keys->k[0];
        found = 0;
    } else {
        for (int i = 0; i < keys->n && found < 0; i++)
            if (memcmp(keys->k[i].name, name, 16) == 0) {
                k = keys->k[i];
                found = i;
            }
    }
    pthread_mutex_unlock(&keys->lock);
    if (found < 0)
        return 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok;
    if (enc) {
        memcpy(name, k.name, 16);
        ok = RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc())) == 1 &&
             EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1;
    } else {
        ok = EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1;
    }
    ok = ok && EVP_MAC_CTX_set_params(hctx, params) == 1;
    OPENSSL_cleanse(&k, sizeof(k));
    if (!ok)
        return -1;
    return enc || found == 0 ? 1 : 2;
}

/* ---- failures ---------------------------------------------------------- */

const char *tls_fail_name(enum tls_fail f)
{
    static const char *const names[TLSF_COUNT] = {"protocol", "http",    "alpn", "certificate",
                                                  "closed",   "timeout", "other"};
    return (unsigned)f < TLSF_COUNT ? names[f] : "other";
}

enum tls_fail tls_fail_of(unsigned long err, bool closed)
{
    if (!err)
        return closed ? TLSF_CLOSED : TLSF_OTHER;
    switch (ERR_GET_REASON(err)) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return TLSF_HTTP;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return TLSF_ALPN;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return TLSF_CERT;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_NO_SHARED_GROUPS:
        return TLSF_PROTOCOL;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TLSF_CLOSED;
    default:
        return TLSF_OTHER;
    }
}

/* ---- server contexts --------------------------------------------------- */

/* ALPN: http/1.1 when offered; a client that offers only other protocols
 * (h2 alone) is told no, cleanly, with no_application_protocol. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static bool name_matches(const char *pattern, const char *name)
{
    if (strcasecmp(pattern, name) == 0)
        return true;
    if (pattern[0] != '*' || pattern[1] != '.')
        return false;
    const char *dot = strchr(name, '.'); /* a wildcard stands for one label */
    return dot && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

/* SNI: the context whose certificate names the server name; exact names
 * first, then wildcards; none: the default stays. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const struct tls_server *srv = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    (void)alert;
    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX *hit = NULL;
    for (int pass = 0; pass < 2 && !hit; pass++)
        for (int i = 0; i < srv->nnames && !hit; i++) {
            bool wild = srv->names[i].name[0] == '*';
            if (wild == (pass == 1) && name_matches(srv->names[i].name, name))
                hit = srv->names[i].ctx;
        }
    if (hit && hit != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, hit);
    return SSL_TLSEXT_ERR_OK;
}

/* "FILE:LINE: listeners.NAME.tls...: " for error messages. */
struct where {
    const struct cfg *cfg;
    const char *what; /* "listeners.web.tls" */
    int line;
    struct cfg_errors *errs;
    bool failed;
};

static void fail_at(struct where *w, const char *fmt, const char *a, const char *b)
{
    char reason[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        snprintf(reason, sizeof(reason), ": %s", ERR_reason_error_string(e));
    ERR_clear_error();
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a, b);
    cfg_errors_addf(w->errs, "%s:%d: %s: %s%s", w->cfg->path, w->line, w->what, msg, reason);
    w->failed = true;
}

/* The leaf certificate of a PEM file. */
static X509 *read_leaf(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

/* The DNS names a certificate is for: subjectAltName, else its common name. */
static int cert_names(X509 *x, char ***out)
{
    char **names = NULL;
    int n = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        char **nn = realloc(names, (size_t)(n + 1) * sizeof(*names));
        if (!nn)
            break;
        names = nn;
        names[n] = strdup(s);
        if (names[n])
            n++;
    }
    GENERAL_NAMES_free(gens);
    if (!n) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) >
                0 &&
            (names = malloc(sizeof(*names))) && (names[0] = strdup(cn)))
            n = 1;
    }
    for (int i = 0; i < n; i++)
        for (char *p = names[i]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    *out = names;
    return n;
}

static void names_free(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static bool same_names(char **a, int na, char **b, int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++) {
        bool found = false;
        for (int j = 0; j < nb && !found; j++)
            found = strcmp(a[i], b[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static SSL_CTX *server_ctx_new(const struct cfg_tls *t, struct tls_keys *keys, struct where *w)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail_at(w, "cannot make a TLS context%s%s", "", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION | (t->tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : TLS_DEFAULT_CIPHERS))
        fail_at(w, "ciphers: no cipher in %s%s", t->ciphers ? t->ciphers : "", "");
    if (t->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, t->ciphersuites))
        fail_at(w, "ciphersuites: no suite in %s%s", t->ciphersuites, "");
    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_app_data(ctx, keys);
    SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, TLS_CACHE_SIZE);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"lb", 2);
    if (t->tickets)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_num_tickets(ctx, 1);
    return ctx;
}

/* Why SSL_CTX_use_PrivateKey_file() failed: the key is not the
 * certificate's (OpenSSL compares them there already, so the check after it
 * rarely fires), or it could not be read. */
static bool key_mismatch(void)
{
    unsigned long e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                                              ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

/* Load one certificate and its key into CTX: readable, not expired, matching. */
static void load_cert(SSL_CTX *ctx, X509 *leaf, const struct cfg_tls_cert *c, struct where *w)
{
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
        fail_at(w, "certificate %s has expired%s", c->cert, "");
        return;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        fail_at(w, "cannot load certificate %s%s", c->cert, "");
        return;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        fail_at(w,
                key_mismatch() ? "key %s does not match certificate %s"
                               : "cannot load key %s for certificate %s",
                c->key, c->cert);
        return;
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        fail_at(w, "key %s does not match certificate %s", c->key, c->cert);
}

static void server_free(struct tls_server *srv)
{
    for (int i = 0; i < srv->nctxs; i++)
        SSL_CTX_free(srv->ctxs[i]);
    free(srv->ctxs);
    for (int i = 0; i < srv->nnames; i++)
        free(srv->names[i].name);
    free(srv->names);
    memset(srv, 0, sizeof(*srv));
}

static int add_name(struct tls_server *srv, const char *name, SSL_CTX *ctx)
{
    for (int i = 0; i < srv->nnames; i++)
        if (strcmp(srv->names[i].name, name) == 0)
            return 0; /* the earlier certificate keeps the name */
    struct tls_name *nn = realloc(srv->names, (size_t)(srv->nnames + 1) * sizeof(*nn));
    if (!nn)
        return -1;
    srv->names = nn;
    if (!(srv->names[srv->nnames].name = strdup(name)))
        return -1;
    srv->names[srv->nnames++].ctx = ctx;
    return 0;
}

/* One context per set of names (an RSA and an ECDSA certificate for the same names share
 * one: the client's signature algorithms choose). */
static int server_build(struct tls_server *srv, const struct cfg_listener *l, struct tls_keys *keys,
                        struct where *w)
{
    char **gnames[CFG_TLS_CERTS_MAX];
    int gn[CFG_TLS_CERTS_MAX], gtypes[CFG_TLS_CERTS_MAX][4], ngt[CFG_TLS_CERTS_MAX];
    if (!(srv->ctxs = calloc((size_t)l->tls.ncerts, sizeof(*srv->ctxs))))
        return -1;
    for (int i = 0; i < l->tls.ncerts; i++) {
        const struct cfg_tls_cert *c = &l->tls.certs[i];
        w->line = c->line;
        X509 *leaf = read_leaf(c->cert);
        if (!leaf) {
            fail_at(w, "cannot read a certificate from %s%s", c->cert, "");
            continue;
        }
        char **names;
        int n = cert_names(leaf, &names);
        EVP_PKEY *pk = X509_get0_pubkey(leaf);
        int type = pk ? EVP_PKEY_get_base_id(pk) : 0;
        int g = -1;
        for (int j = 0; j < srv->nctxs && g < 0; j++) {
            bool has_type = false;
            for (int k = 0; k < ngt[j]; k++)
                has_type |= gtypes[j][k] == type;
            if (!has_type && ngt[j] < 4 && same_names(gnames[j], gn[j], names, n))
                g = j;
        }
        if (g < 0) {
            SSL_CTX *ctx = server_ctx_new(&l->tls, keys, w);
            if (!ctx) {
                names_free(names, n);
                X509_free(leaf);
                break;
            }
            g = srv->nctxs++;
            srv->ctxs[g] = ctx;
            gnames[g] = names;
            gn[g] = n;
            ngt[g] = 0;
            for (int k = 0; k < n; k++)
                if (add_name(srv, names[k], ctx) == -1)
                    fail_at(w, "out of memory%s%s", "", "");
        } else {
            names_free(names, n);
        }
        gtypes[g][ngt[g]++] = type;
        load_cert(srv->ctxs[g], leaf, c, w);
        X509_free(leaf);
    }
    for (int j = 0; j < srv->nctxs; j++) {
        names_free(gnames[j], gn[j]);
        SSL_CTX_set_tlsext_servername_callback(srv->ctxs[j], sni_cb);
        SSL_CTX_set_tlsext_servername_arg(srv->ctxs[j], srv);
    }
    srv->def = srv->nctxs ? srv->ctxs[0] : NULL;
    return 0;
}

/* ---- client contexts --------------------------------------------------- */

static int on_new_session(SSL *ssl, SSL_SESSION *s)
{
    struct tls_session_sink *sink = SSL_get_app_data(ssl);
    if (!sink)
        return 0; /* not kept: OpenSSL frees it */
    sink->keep(sink, s);
    return 1;
}

static SSL_CTX *client_build(const struct cfg_backend_tls *t, struct where *w)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        fail_at(w, "cannot make a TLS context%s%s", "", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (t->verify) {
        if (t->ca ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1)
            fail_at(w, "cannot load the CA certificates %s%s", t->ca ? t->ca : "of the system", "");
    }
    if (t->cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
            fail_at(w, "cannot load certificate %s%s", t->cert, "");
        else if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
            fail_at(w,
                    key_mismatch() ? "key %s does not match certificate %s"
                                   : "cannot load key %s for certificate %s",
                    t->key, t->cert);
        else if (SSL_CTX_check_private_key(ctx) != 1)
            fail_at(w, "key %s does not match certificate %s", t->key, t->cert);
    }
    return ctx;
}

/* ---- a configuration's set ----------------------------------------------- */

struct tls_set *tls_build(const struct cfg *cfg, struct tls_keys *keys, struct cfg_errors *errs)
{
    struct tls_set *t = calloc(1, sizeof(*t));
    if (!t)
        goto oom;
    atomic_init(&t->refs, 1);
    t->nlisteners = cfg->nlisteners;
    t->npools = cfg->npools;
    t->listeners = calloc((size_t)(cfg->nlisteners ? cfg->nlisteners : 1), sizeof(*t->listeners));
    t->pools = calloc((size_t)(cfg->npools ? cfg->npools : 1), sizeof(*t->pools));
    if (!t->listeners || !t->pools)
        goto oom;
    bool failed = false;
    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (!l->tls_enabled)
            continue;
        char what[CFG_NAME_MAX + 32];
        snprintf(what, sizeof(what), "listeners.%s.tls", l->name);
        struct where w = {.cfg = cfg, .what = what, .line = l->tls.line, .errs = errs};
        if (server_build(&t->listeners[i], l, keys, &w) == -1)
            goto oom;
        failed |= w.failed;
    }
    for (int i = 0; i < cfg->npools; i++) {
        const struct cfg_pool *p = &cfg->pools[i];
        if (!p->tls.enabled)
            continue;
        char what[CFG_NAME_MAX + 32];
        snprintf(what, sizeof(what), "pools.%s.tls", p->name);
        struct where w = {.cfg = cfg, .what = what, .line = p->tls.line, .errs = errs};
        t->pools[i] = client_build(&p->tls, &w);
        failed |= w.failed || !t->pools[i];
    }
    if (!failed)
        return t;
    tls_set_free(t);
    return NULL;
oom:
    cfg_errors_addf(errs, "%s: out of memory building the TLS contexts", cfg->path);
    tls_set_free(t);
    return NULL;
}

struct tls_set *tls_set_ref(struct tls_set *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
    return t;
}

void tls_set_free(struct tls_set *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (int i = 0; t->listeners && i < t->nlisteners; i++)
        server_free(&t->listeners[i]);
    for (int i = 0; t->pools && i < t->npools; i++)
        SSL_CTX_free(t->pools[i]);
    free(t->listeners);
    free(t->pools);
    free(t);
}
