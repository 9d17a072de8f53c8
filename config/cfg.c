/*
 * cfg.c - libconfig file -> one validated, immutable struct cfg.
 *
 * The loader walks the libconfig tree with one table of known keys per
 * group (name, handler, where the value goes). Handlers check a value and
 * store it, or report an error and leave the default in place; the walk
 * never stops at the first error, so an operator sees every problem of a
 * file at once. Errors are sorted by line before they are handed back.
 *
 * Everything the snapshot points to lives in one arena, so cfg_free() is a
 * single walk over a chunk list and no error path can leak a piece of it.
 * The libconfig tree is destroyed before cfg_load() returns.
 */
#include "config/cfg.h"
#include "config/cfg_syntax.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <libconfig.h>
#include <math.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_ERRORS  100
#define CFG_MAX_WORKERS 64
#define CFG_PATH_MAX    320 /* "listeners.NAME.routes[N].path_prefix" and the like */
#define CFG_QUOTE_MAX   100 /* a value quoted into a message, truncated with "..." */
#define CFG_SUGGEST_MAX 64  /* longer words get no "did you mean" */
#define CFG_MAX_FILES   8   /* distinct @include files told apart when sorting errors */
#define CFG_CHUNK_SIZE  16384
#define CFG_COUNT_MAX   1000000.0
#define CFG_BIG_MAX     2147483647.0 /* keeps counters within int32 arithmetic */

/* ------------------------------------------------------------------------ */
/* arena: a bump allocator over calloc'd chunks, freed all at once          */

struct cfg_chunk {
    struct cfg_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
};

struct cfg_arena {
    struct cfg_chunk *chunks; /* newest first */
    _Atomic int refs;         /* its snapshot, and each snapshot derived from it */
    struct cfg_arena *parent; /* a derived snapshot's: the arena it shares strings with */
};

#define CFG_ALIGN     alignof(max_align_t)
#define CFG_ROUND(n)  (((n) + CFG_ALIGN - 1) & ~(CFG_ALIGN - 1))
#define CFG_CHUNK_HDR CFG_ROUND(sizeof(struct cfg_chunk))

/* Zeroed memory that lives until arena_free(); NULL when out of memory. */
static void *arena_alloc(struct cfg_arena *a, size_t n)
{
    struct cfg_chunk *c = a->chunks;
    void *p;

    if (n == 0 || n > SIZE_MAX / 2)
        return NULL;
    n = CFG_ROUND(n);
    if (!c || c->size - c->used < n) {
        size_t size = n > CFG_CHUNK_SIZE ? n : CFG_CHUNK_SIZE;

        c = calloc(1, CFG_CHUNK_HDR + size);
        if (!c)
            return NULL;
        c->size = size;
        c->next = a->chunks;
        a->chunks = c;
    }
    p = (char *)c + CFG_CHUNK_HDR + c->used;
    c->used += n;
    return p;
}

static void *arena_calloc(struct cfg_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    return arena_alloc(a, n * size);
}

static char *arena_strdup(struct cfg_arena *a, const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = arena_alloc(a, len);

    if (p)
        memcpy(p, s, len);
    return p;
}

/* A new arena with one reference; NULL when out of memory. */
static struct cfg_arena *arena_new(void)
{
    struct cfg_arena *a = calloc(1, sizeof(*a));

    if (a)
        atomic_init(&a->refs, 1);
    return a;
}

/* Drops a reference; the last one frees the chunks, then lets go of the parent. */
static void arena_free(struct cfg_arena *a)
{
    struct cfg_chunk *c, *next;

    while (a && atomic_fetch_sub(&a->refs, 1) == 1) {
        struct cfg_arena *parent = a->parent;

        for (c = a->chunks; c; c = next) {
            next = c->next;
            free(c);
        }
        free(a);
        a = parent;
    }
}

/* ------------------------------------------------------------------------ */
/* the loader and its error list                                            */

struct cfg_msg {
    char *text; /* "FILE:LINE: message", malloc'd */
    int rank;   /* order of FILE among the files seen, for sorting */
    int line;
};

struct cfg_loader {
    struct cfg *cfg;
    struct cfg_arena *arena;
    const char *name;        /* FILE for settings that carry no file name */
    const char *include_dir; /* libconfig records @include names as written */
    config_setting_t *root;
    const config_setting_t *listeners; /* walked last, once every pool name is known */
    bool files_ok; /* settings may name files to read (admin.token_file); not from a string */
    const char *file_token; /* what admin.token_file held, until check_admin() takes it */
    struct cfg_msg msgs[CFG_MAX_ERRORS];
    int nmsgs;
    int dropped; /* errors found past CFG_MAX_ERRORS */
    const char *files[CFG_MAX_FILES];
    int nfiles;
    bool oom;
};

static char *vfmt(const char *f, va_list ap)
{
    va_list ap2;
    char *s;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, f, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, f, ap);
    return s;
}

/* A malloc'd formatted string, or NULL when out of memory. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;

    va_start(ap, f);
    s = vfmt(f, ap);
    va_end(ap);
    return s;
}

static int file_rank(struct cfg_loader *ld, const char *file)
{
    for (int i = 0; i < ld->nfiles; i++)
        if (strcmp(ld->files[i], file) == 0)
            return i;
    if (ld->nfiles == CFG_MAX_FILES)
        return CFG_MAX_FILES;
    ld->files[ld->nfiles] = file;
    return ld->nfiles++;
}

static const char *setting_file(const struct cfg_loader *ld, const config_setting_t *s)
{
    return s && config_setting_source_file(s) ? config_setting_source_file(s) : ld->name;
}

/* The directory to put before FILE in a message so that an included file
 * is named as the operator can open it: "" or "dir/". */
static const char *file_dir(const char *include_dir, const char *name, const char *file,
                            const char **sep)
{
    *sep = "";
    if (!include_dir || file == name || file[0] == '/')
        return "";
    *sep = "/";
    return include_dir;
}

/* The root group has line 0: point at the top of the file instead. */
static int setting_line(const config_setting_t *s)
{
    int line = s ? config_setting_source_line(s) : 0;

    return line > 0 ? line : 1;
}

/*
 * Report a problem with setting S (or, for a missing key, its group) as
 * "FILE:LINE: PATH: message". PATH may be "" at the top level.
 */
__attribute__((format(printf, 4, 5))) static void
cfg_err(struct cfg_loader *ld, const config_setting_t *s, const char *path, const char *f, ...)
{
    const char *file = setting_file(ld, s), *sep;
    const char *dir = file_dir(ld->include_dir, ld->name, file, &sep);
    int line = setting_line(s);
    char *body, *text;
    va_list ap;

    if (ld->nmsgs == CFG_MAX_ERRORS) {
        ld->dropped++;
        return;
    }
    va_start(ap, f);
    body = vfmt(f, ap);
    va_end(ap);
    if (!body) {
        ld->oom = true;
        return;
    }
    text = fmt("%s%s%s:%d: %s%s%s", dir, sep, file, line, path, *path ? ": " : "", body);
    free(body);
    if (!text) {
        ld->oom = true;
        return;
    }
    ld->msgs[ld->nmsgs].text = text;
    ld->msgs[ld->nmsgs].rank = file_rank(ld, file);
    ld->msgs[ld->nmsgs].line = line;
    ld->nmsgs++;
}

/* Appends a malloc'd message to ERRS; frees it when it cannot. */
static void errs_push(struct cfg_errors *errs, char *msg)
{
    if (!msg)
        return;
    if (!errs) {
        free(msg);
        return;
    }
    if (errs->n == errs->cap) {
        int cap = errs->cap ? errs->cap * 2 : 16;
        char **msgs = realloc(errs->msgs, (size_t)cap * sizeof(*msgs));

        if (!msgs) {
            free(msg);
            return;
        }
        errs->msgs = msgs;
        errs->cap = cap;
    }
    errs->msgs[errs->n++] = msg;
}

void cfg_errors_addf(struct cfg_errors *errs, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) == -1)
        msg = NULL;
    va_end(ap);
    errs_push(errs, msg);
}

/* Hands the collected errors to ERRS in file order, then line order. */
static void loader_finish(struct cfg_loader *ld, struct cfg_errors *errs)
{
    for (int i = 1; i < ld->nmsgs; i++) {
        struct cfg_msg m = ld->msgs[i];
        int j = i;

        for (; j > 0 && (ld->msgs[j - 1].rank > m.rank ||
                         (ld->msgs[j - 1].rank == m.rank && ld->msgs[j - 1].line > m.line));
             j--)
            ld->msgs[j] = ld->msgs[j - 1];
        ld->msgs[j] = m;
    }
    for (int i = 0; i < ld->nmsgs; i++)
        errs_push(errs, ld->msgs[i].text);
    ld->nmsgs = 0;
    if (ld->dropped)
        errs_push(errs, fmt("%s: too many errors, %d more not shown", ld->name, ld->dropped));
    if (ld->oom)
        errs_push(errs, fmt("%s: out of memory while loading the configuration", ld->name));
}

/* ------------------------------------------------------------------------ */
/* pieces of messages                                                       */

/* S as a double-quoted, escaped, possibly truncated string in BUF. */
static const char *quote(const char *s, char *buf, size_t size)
{
    size_t o = 0;

    buf[o++] = '"';
    for (; *s && o + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* A setting's value as it should appear in a message. */
static const char *describe(const config_setting_t *s, char *buf, size_t size)
{
    const char *str;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_STRING:
        str = config_setting_get_string(s);
        return quote(str ? str : "", buf, size);
    case CONFIG_TYPE_INT:
        snprintf(buf, size, "%d", config_setting_get_int(s));
        return buf;
    case CONFIG_TYPE_INT64:
        snprintf(buf, size, "%lld", config_setting_get_int64(s));
        return buf;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, size, "%g", config_setting_get_float(s));
        return buf;
    case CONFIG_TYPE_BOOL:
        return config_setting_get_bool(s) ? "true" : "false";
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_LIST:
        return "a list";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    default:
        return "nothing";
    }
}

static void path_join(char *out, const char *parent, const char *name)
{
    if (snprintf(out, CFG_PATH_MAX, "%s%s%s", parent, *parent ? "." : "", name) >= CFG_PATH_MAX)
        strcpy(out + CFG_PATH_MAX - 4, "...");
}

static void path_index(char *out, const char *parent, int i)
{
    if (snprintf(out, CFG_PATH_MAX, "%s[%d]", parent, i) >= CFG_PATH_MAX)
        strcpy(out + CFG_PATH_MAX - 4, "...");
}

/* Case-insensitive Levenshtein distance; both strings < CFG_SUGGEST_MAX. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[CFG_SUGGEST_MAX + 1];

    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest candidate seen so far to a misspelt word. */
struct cfg_suggest {
    const char *word;
    const char *best;
    size_t dist;
};

static void suggest_try(struct cfg_suggest *sg, const char *cand)
{
    size_t len = strlen(sg->word), limit = len <= 4 ? 1 : 2, d;

    if (!cand || len >= CFG_SUGGEST_MAX || strlen(cand) >= CFG_SUGGEST_MAX)
        return;
    d = edit_distance(sg->word, cand);
    if (d <= limit && (!sg->best || d < sg->dist)) {
        sg->best = cand;
        sg->dist = d;
    }
}

/* " (did you mean "X"?)" or "" in BUF. */
static const char *suggest_text(const struct cfg_suggest *sg, char *buf, size_t size)
{
    char q[CFG_QUOTE_MAX];

    if (!sg->best)
        return "";
    snprintf(buf, size, " (did you mean %s?)", quote(sg->best, q, sizeof(q)));
    return buf;
}

/* ------------------------------------------------------------------------ */
/* enumerations                                                             */

struct cfg_enum_name {
    const char *name;
    int value;
};

static const struct cfg_enum_name level_names[] = {
    {"error", CFG_LOG_ERROR},
    {"warn", CFG_LOG_WARN},
    {"info", CFG_LOG_INFO},
    {"debug", CFG_LOG_DEBUG},
    {NULL, 0},
};

static const struct cfg_enum_name format_names[] = {
    {"text", CFG_FMT_TEXT},
    {"json", CFG_FMT_JSON},
    {NULL, 0},
};

static const struct cfg_enum_name state_names[] = {
    {"active", CFG_ADMIN_ACTIVE},
    {"drain", CFG_ADMIN_DRAIN},
    {"maint", CFG_ADMIN_MAINT},
    {NULL, 0},
};

static const struct cfg_enum_name balance_names[] = {
    {"round-robin", CFG_BAL_ROUND_ROBIN},
    {"least-request", CFG_BAL_LEAST_REQUEST},
    {"p2c-ewma", CFG_BAL_P2C_EWMA},
    {"hash", CFG_BAL_HASH},
    {NULL, 0},
};

static const struct cfg_enum_name locality_names[] = {
    {"zone-aware", CFG_LOC_ZONE_AWARE},
    {"off", CFG_LOC_OFF},
    {NULL, 0},
};

static const struct cfg_enum_name splice_names[] = {
    {"auto", CFG_SPLICE_AUTO},
    {"off", CFG_SPLICE_OFF},
    {NULL, 0},
};

static const struct cfg_enum_name health_names[] = {
    {"http", CFG_HC_HTTP},
    {"tcp", CFG_HC_TCP},
    {"off", CFG_HC_OFF},
    {NULL, 0},
};

static const struct cfg_enum_name dns_type_names[] = {
    {"A", CFG_DNS_A},
    {"AAAA", CFG_DNS_AAAA},
    {"SRV", CFG_DNS_SRV},
    {NULL, 0},
};

/* key_enum() stores an int into an enum member. */
_Static_assert(sizeof(enum cfg_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_admin_state) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_balance) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_locality) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_health_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_dns_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_splice) == sizeof(int), "enum size");

static const char *enum_name(const struct cfg_enum_name *t, int value)
{
    for (; t->name; t++)
        if (t->value == value)
            return t->name;
    return "?";
}

const char *cfg_admin_state_name(enum cfg_admin_state s)
{
    return enum_name(state_names, (int)s);
}

const char *cfg_balance_name(enum cfg_balance b)
{
    return enum_name(balance_names, (int)b);
}

const char *cfg_dns_type_name(enum cfg_dns_type t)
{
    return enum_name(dns_type_names, (int)t);
}

/* ------------------------------------------------------------------------ */
/* value checks                                                             */

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Pool, listener and backend names end up in admin API URLs. */
static bool name_is_valid(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!is_name_char(s[n]) || n >= CFG_NAME_MAX - 1)
            return false;
    return n > 0;
}

/* An RFC 9110 token: header, cookie and query parameter names. */
static bool token_is_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

/* A host name or a bracketed IPv6 literal, without a port. */
static bool host_is_valid(const char *s)
{
    if (s[0] == '[') {
        size_t n = strspn(s + 1, "0123456789abcdefABCDEF:.");
        return n > 0 && s[1 + n] == ']' && s[2 + n] == '\0';
    }
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_name_char(*s))
            return false;
    return true;
}

/*
 * A DNS name to resolve: labels of 1-63 letters, digits, '-' or '_' joined
 * by dots, at most 253 characters, a final dot allowed; its last label is
 * not all digits (so "10.0.0.300" is a bad address, not a name).
 */
static bool dns_name_is_valid(const char *s)
{
    size_t len = strlen(s), label = 0;
    bool digits = true;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            digits = true;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') ||
            ++label > 63)
            return false;
        digits &= c >= '0' && c <= '9';
    }
    return label > 0 && !digits;
}

/* An origin-form request path: "/" then visible ASCII. */
static bool path_is_valid(const char *s)
{
    if (s[0] != '/')
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f)
            return false;
    return true;
}

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

bool cfg_addr_is_loopback(const struct cfg_addr *a)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;

    switch (a->sa.ss_family) {
    case AF_UNIX:
        return true;
    case AF_INET:
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    case AF_INET6:
        return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
    default:
        return false;
    }
}

static bool addr_is_wildcard(const struct cfg_addr *a)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;

    if (a->sa.ss_family == AF_INET)
        return sin->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
    return false;
}

/* "90s", "250ms": the most readable exact unit. */
static const char *fmt_ms(uint32_t ms, char *buf, size_t size)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, size, "%uh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, size, "%um", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, size, "%us", ms / 1000);
    else
        snprintf(buf, size, "%ums", ms);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* reading typed values; each reports a wrong type and returns false        */

static bool get_integer(struct cfg_loader *ld, const config_setting_t *s, const char *path,
                        long long *v)
{
    char d[CFG_QUOTE_MAX];

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        *v = config_setting_get_int(s);
        return true;
    case CONFIG_TYPE_INT64:
        *v = config_setting_get_int64(s);
        return true;
    default:
        cfg_err(ld, s, path, "expected an integer, got %s", describe(s, d, sizeof(d)));
        return false;
    }
}

/* Integers and floats both: "failure_rate = 1" means 1.0. */
static bool get_number(struct cfg_loader *ld, const config_setting_t *s, const char *path,
                       double *v)
{
    char d[CFG_QUOTE_MAX];

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        *v = config_setting_get_int(s);
        return true;
    case CONFIG_TYPE_INT64:
        *v = (double)config_setting_get_int64(s);
        return true;
    case CONFIG_TYPE_FLOAT:
        *v = config_setting_get_float(s);
        if (isfinite(*v))
            return true;
        cfg_err(ld, s, path, "expected a finite number, got %s", describe(s, d, sizeof(d)));
        return false;
    default:
        cfg_err(ld, s, path, "expected a number, got %s", describe(s, d, sizeof(d)));
        return false;
    }
}

/* A string without control characters (they would end up in logs and
 * request heads); NULL after reporting why not. */
static const char *get_string(struct cfg_loader *ld, const config_setting_t *s, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        cfg_err(ld, s, path, "expected a string, got %s", describe(s, d, sizeof(d)));
        return NULL;
    }
    v = config_setting_get_string(s);
    if (!v)
        v = "";
    if (has_control_chars(v)) {
        cfg_err(ld, s, path, "%s contains control characters", describe(s, d, sizeof(d)));
        return NULL;
    }
    return v;
}

static const char *get_nonempty(struct cfg_loader *ld, const config_setting_t *s, const char *path)
{
    const char *v = get_string(ld, s, path);

    if (v && !*v) {
        cfg_err(ld, s, path, "must not be empty");
        return NULL;
    }
    return v;
}

/* A copy in the arena, or NULL (and the loader marked) when out of memory. */
static const char *keep(struct cfg_loader *ld, const char *s)
{
    const char *p = arena_strdup(ld->arena, s);

    if (!p)
        ld->oom = true;
    return p;
}

/* ------------------------------------------------------------------------ */
/* the key tables and their handlers                                        */

struct cfg_key;

/* Handlers check setting S (at PATH) and store it into OBJ, or report. */
struct cfg_key {
    const char *name;
    void (*parse)(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                  void *obj, const char *path);
    size_t off;      /* where the value goes in OBJ */
    double lo, hi;   /* allowed range of numbers; lo is the minimum in ms for durations */
    const void *arg; /* enum names or a nested struct cfg_group */
    bool required;
};

struct cfg_group {
    const struct cfg_key *keys;
    size_t n;
};

#define CFG_NKEYS(t) (sizeof(t) / sizeof((t)[0]))

/* A row of a key table: CFG_KEY(struct type, "name", handler, member, .lo = ...). */
#define CFG_KEY(type, n, fn, m, ...)                                                               \
    {                                                                                              \
        .name = (n), .parse = (fn), .off = offsetof(type, m), __VA_ARGS__                          \
    }

static void *field(void *obj, const struct cfg_key *k)
{
    return (char *)obj + k->off;
}

static void walk_group(struct cfg_loader *ld, const config_setting_t *g,
                       const struct cfg_group *def, void *obj, const char *path);

static void key_u32(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                    void *obj, const char *path)
{
    long long v;

    if (!get_integer(ld, s, path, &v))
        return;
    if ((double)v < k->lo || (double)v > k->hi) {
        cfg_err(ld, s, path, "%lld is out of range (%.0f-%.0f)", v, k->lo, k->hi);
        return;
    }
    *(uint32_t *)field(obj, k) = (uint32_t)v;
}

static void key_double(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                       void *obj, const char *path)
{
    double v;

    if (!get_number(ld, s, path, &v))
        return;
    if (v < k->lo || v > k->hi) {
        cfg_err(ld, s, path, "%g is out of range (%g-%g)", v, k->lo, k->hi);
        return;
    }
    *(double *)field(obj, k) = v;
}

/* hash_balance: a floor but no ceiling worth naming. */
static void key_double_min(struct cfg_loader *ld, const config_setting_t *s,
                           const struct cfg_key *k, void *obj, const char *path)
{
    double v;

    if (!get_number(ld, s, path, &v))
        return;
    if (v < k->lo) {
        cfg_err(ld, s, path, "%g is too small (at least %g)", v, k->lo);
        return;
    }
    *(double *)field(obj, k) = v;
}

static void key_duration(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *why;
    uint32_t ms;

    if (config_setting_is_number(s)) {
        describe(s, d, sizeof(d));
        cfg_err(ld, s, path,
                "%s: duration needs a unit (write it as a string: \"%ss\" or \"%sms\")", d, d, d);
        return;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        cfg_err(ld, s, path, "expected a duration such as \"2s\", got %s",
                describe(s, d, sizeof(d)));
        return;
    }
    if (cfg_parse_duration_why(config_setting_get_string(s), &ms, &why) == -1) {
        cfg_err(ld, s, path, "%s is not a duration: %s", describe(s, d, sizeof(d)), why);
        return;
    }
    if (ms < k->lo) {
        cfg_err(ld, s, path, "%s must be more than 0", describe(s, d, sizeof(d)));
        return;
    }
    *(uint32_t *)field(obj, k) = ms;
}

static void key_bool(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];

    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        cfg_err(ld, s, path, "expected true or false, got %s", describe(s, d, sizeof(d)));
        return;
    }
    *(bool *)field(obj, k) = config_setting_get_bool(s);
}

static void key_text(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    const char *v = get_nonempty(ld, s, path);

    if (v)
        *(const char **)field(obj, k) = keep(ld, v);
}

static void key_name(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (!name_is_valid(v)) {
        cfg_err(ld, s, path, "%s is not a valid name (1-%d characters from A-Z a-z 0-9 . _ -)",
                describe(s, d, sizeof(d)), CFG_NAME_MAX - 1);
        return;
    }
    *(const char **)field(obj, k) = keep(ld, v);
}

/* zone and region: a name, or "" for "not given". */
static void key_label(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                      void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (*v && !name_is_valid(v)) {
        cfg_err(ld, s, path,
                "%s is not a valid zone or region (1-%d characters from A-Z a-z 0-9 . _ -)",
                describe(s, d, sizeof(d)), CFG_NAME_MAX - 1);
        return;
    }
    *(const char **)field(obj, k) = *v ? keep(ld, v) : "";
}

static void key_enum(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    const struct cfg_enum_name *names = k->arg;
    struct cfg_suggest sg = {0};
    char d[CFG_QUOTE_MAX], hint[CFG_QUOTE_MAX + 32], list[128] = "";
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    sg.word = v;
    for (const struct cfg_enum_name *e = names; e->name; e++) {
        if (strcmp(e->name, v) == 0) {
            memcpy(field(obj, k), &e->value, sizeof(int));
            return;
        }
        suggest_try(&sg, e->name);
        if (snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                     e == names ? "" : ", ", e->name) < 0)
            return;
    }
    cfg_err(ld, s, path, "%s is not one of %s%s", describe(s, d, sizeof(d)), list,
            suggest_text(&sg, hint, sizeof(hint)));
}

static void check_addr(struct cfg_loader *ld, const config_setting_t *s, const char *path,
                       struct cfg_addr *out, bool connect)
{
    char d[CFG_QUOTE_MAX];
    struct cfg_addr a;
    const char *why;
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (cfg_parse_addr_why(v, &a, &why) == -1) {
        cfg_err(ld, s, path, "%s: %s", describe(s, d, sizeof(d)), why);
        return;
    }
    if (connect && addr_is_wildcard(&a)) {
        cfg_err(ld, s, path, "%s: a backend needs a real address, not a wildcard",
                describe(s, d, sizeof(d)));
        return;
    }
    *out = a;
}

static void key_listen_addr(struct cfg_loader *ld, const config_setting_t *s,
                            const struct cfg_key *k, void *obj, const char *path)
{
    check_addr(ld, s, path, field(obj, k), false);
}

/*
 * A backend's address: a connectable address (not a wildcard), or
 * "NAME:PORT" with a DNS name, kept unresolved (b->host) for the running lb
 * to resolve: `lb -t` and a reload never depend on the resolver.
 */
static void key_backend_addr(struct cfg_loader *ld, const config_setting_t *s,
                             const struct cfg_key *k, void *obj, const char *path)
{
    struct cfg_backend *b = obj;
    char d[CFG_QUOTE_MAX], host[sizeof(b->addr.text)], probe[48];
    const char *v = get_string(ld, s, path), *colon, *why;
    struct cfg_addr a;

    (void)k;
    if (!v)
        return;
    if (cfg_parse_addr_why(v, &a, &why) == 0 || strlen(v) >= sizeof(b->addr.text) ||
        strncmp(v, "unix:", 5) == 0 || v[0] == '[' || !(colon = strrchr(v, ':')) ||
        strchr(v, ':') != colon) {
        check_addr(ld, s, path, &b->addr, true);
        return;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - v), v);
    if (!dns_name_is_valid(host)) {
        cfg_err(ld, s, path,
                "%s: host must be a numeric IP address, [IPv6], localhost or a DNS name "
                "(letters, digits, '-' and '_' in dot-separated labels)",
                describe(s, d, sizeof(d)));
        return;
    }
    /* the port is checked as any address's is */
    snprintf(probe, sizeof(probe), "127.0.0.1:%.20s", colon + 1);
    if (cfg_parse_addr_why(probe, &a, &why) == -1) {
        cfg_err(ld, s, path, "%s: %s", describe(s, d, sizeof(d)), why);
        return;
    }
    memset(&b->addr, 0, sizeof(b->addr));
    snprintf(b->addr.text, sizeof(b->addr.text), "%s", v);
    b->host = keep(ld, host);
    b->port = ntohs(((const struct sockaddr_in *)&a.sa)->sin_port);
}

static void key_status_set(struct cfg_loader *ld, const config_setting_t *s,
                           const struct cfg_key *k, void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *why;
    const char *v = get_string(ld, s, path);

    if (v && cfg_parse_status_set_why(v, field(obj, k), &why) == -1)
        cfg_err(ld, s, path, "%s: %s", describe(s, d, sizeof(d)), why);
}

static void key_group(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                      void *obj, const char *path)
{
    walk_group(ld, s, k->arg, field(obj, k), path);
}

/* log.access: "off" -> NULL, "stdout", or a file path. */
static void key_access(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                       void *obj, const char *path)
{
    const char *v = get_nonempty(ld, s, path);

    if (v)
        *(const char **)field(obj, k) = strcmp(v, "off") == 0 ? NULL : keep(ld, v);
}

/* admin.token goes into an Authorization header; it is never echoed. A
 * token too long for an admin request head would pass here and then fail
 * every POST, so it is refused now. */
/* Is V a usable admin token? Reports why not against S. */
static bool token_ok(struct cfg_loader *ld, const config_setting_t *s, const char *path,
                     const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            cfg_err(ld, s, path, "must be printable ASCII without spaces");
            return false;
        }
    }
    if (strlen(v) > CFG_TOKEN_MAX) {
        cfg_err(ld, s, path,
                "%zu characters is too long (at most %d, so that it fits in an admin request "
                "head)",
                strlen(v), CFG_TOKEN_MAX);
        return false;
    }
    return true;
}

static void key_token(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                      void *obj, const char *path)
{
    const char *v = get_nonempty(ld, s, path);

    if (!v || !token_ok(ld, s, path, v))
        return;
    *(const char **)field(obj, k) = keep(ld, v);
}

#define CFG_TOKEN_FILE_MAX (CFG_TOKEN_MAX + 2) /* the token and a line end */

/*
 * admin.token_file: the token is the file's content less one final line
 * end (a Kubernetes Secret or `echo > file` adds one). A relative path is
 * taken from the configuration file's directory, as @include does. Read at
 * every load, so a reload picks up a rotated token.
 */
static void key_token_file(struct cfg_loader *ld, const config_setting_t *s,
                           const struct cfg_key *k, void *obj, const char *path)
{
    char q[CFG_QUOTE_MAX], full[4096], buf[CFG_TOKEN_FILE_MAX + 1];
    const char *v = get_nonempty(ld, s, path);
    size_t n;
    FILE *f;

    if (!v)
        return;
    if (!ld->files_ok) {
        cfg_err(ld, s, path, "files cannot be read when loading from a string");
        return;
    }
    if (v[0] != '/' && ld->include_dir)
        snprintf(full, sizeof(full), "%s/%s", ld->include_dir, v);
    else
        snprintf(full, sizeof(full), "%s", v);
    f = fopen(full, "r");
    if (!f) {
        cfg_err(ld, s, path, "cannot read %s: %s", quote(full, q, sizeof(q)), strerror(errno));
        return;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    if (ferror(f)) {
        cfg_err(ld, s, path, "cannot read %s: %s", quote(full, q, sizeof(q)), strerror(errno));
        fclose(f);
        return;
    }
    fclose(f);
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    if (n == 0) {
        cfg_err(ld, s, path, "%s is empty", quote(full, q, sizeof(q)));
        return;
    }
    if (strlen(buf) != n) {
        cfg_err(ld, s, path, "%s holds a NUL byte", quote(full, q, sizeof(q)));
        return;
    }
    if (!token_ok(ld, s, path, buf))
        return;
    ld->file_token = keep(ld, buf);
    *(const char **)field(obj, k) = keep(ld, full);
}

static void key_host(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (!host_is_valid(v)) {
        cfg_err(ld, s, path, "%s is not a host name (letters, digits, '.', '-', '_', no port)",
                describe(s, d, sizeof(d)));
        return;
    }
    *(const char **)field(obj, k) = keep(ld, v);
}

static void key_path(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (!path_is_valid(v)) {
        cfg_err(ld, s, path, "%s must start with \"/\" and hold no spaces",
                describe(s, d, sizeof(d)));
        return;
    }
    *(const char **)field(obj, k) = keep(ld, v);
}

/* A file we will read later: check now so that a reload fails early. */
static void key_file(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                     void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_nonempty(ld, s, path);

    if (!v)
        return;
    if (access(v, R_OK) == -1) {
        cfg_err(ld, s, path, "cannot read %s: %s", describe(s, d, sizeof(d)), strerror(errno));
        return;
    }
    *(const char **)field(obj, k) = keep(ld, v);
}

/* hash_key: header:NAME | cookie:NAME | query:NAME | path | client-ip */
static void key_hash_key(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    static const struct {
        const char *prefix;
        enum cfg_hash_src src;
    } named[] = {
        {"header:", CFG_HASH_HEADER}, {"cookie:", CFG_HASH_COOKIE}, {"query:", CFG_HASH_QUERY}};
    struct cfg_pool *p = obj;
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    (void)k;
    if (!v)
        return;
    if (strcmp(v, "path") == 0 || strcmp(v, "client-ip") == 0) {
        p->hash_src = v[0] == 'p' ? CFG_HASH_PATH : CFG_HASH_CLIENT_IP;
        p->hash_name = NULL;
        return;
    }
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t len = strlen(named[i].prefix);

        if (strncmp(v, named[i].prefix, len) != 0)
            continue;
        if (!token_is_valid(v + len)) {
            cfg_err(ld, s, path, "%s: the name after \"%s\" must be a non-empty token",
                    describe(s, d, sizeof(d)), named[i].prefix);
            return;
        }
        p->hash_src = named[i].src;
        p->hash_name = keep(ld, v + len);
        return;
    }
    cfg_err(ld, s, path,
            "%s is not a hash key (use header:NAME, cookie:NAME, query:NAME, path or client-ip)",
            describe(s, d, sizeof(d)));
}

static const struct cfg_enum_name retry_names[] = {
    {"connect-failure", CFG_RETRY_CONNECT_FAILURE},
    {"reset", CFG_RETRY_RESET},
    {"timeout", CFG_RETRY_TIMEOUT},
    {"invalid-response", CFG_RETRY_INVALID},
    {NULL, 0},
};

/* One retry.on item: a condition, or statuses ("503", "5xx", "500-504"). */
static void retry_item(struct cfg_loader *ld, const config_setting_t *e, struct cfg_retry *r,
                       const char *path)
{
    struct cfg_status_set set;
    struct cfg_suggest sg = {0};
    char d[CFG_QUOTE_MAX], hint[CFG_QUOTE_MAX + 32];
    const char *v = get_string(ld, e, path);

    if (!v)
        return;
    sg.word = v;
    for (const struct cfg_enum_name *n = retry_names; n->name; n++) {
        if (strcmp(n->name, v) == 0) {
            r->on |= (unsigned)n->value;
            return;
        }
        suggest_try(&sg, n->name);
    }
    if (cfg_parse_status_set(v, &set) == 0) {
        for (size_t i = 0; i < sizeof(set.bits) / sizeof(set.bits[0]); i++)
            r->on_statuses.bits[i] |= set.bits[i];
        return;
    }
    cfg_err(ld, e, path,
            "unknown retry condition %s%s; use connect-failure, reset, timeout, "
            "invalid-response, a status such as 503, or a class such as 5xx",
            describe(e, d, sizeof(d)), suggest_text(&sg, hint, sizeof(hint)));
}

/* retry.on replaces the default conditions as a whole. */
static void key_retry_on(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    struct cfg_retry *r = obj; /* sets both on and on_statuses */
    char d[CFG_QUOTE_MAX], epath[CFG_PATH_MAX];
    int n;

    (void)k;
    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        cfg_err(ld, s, path,
                "expected a list of strings such as [ \"connect-failure\", \"503\" ], got %s",
                describe(s, d, sizeof(d)));
        return;
    }
    r->on = 0;
    memset(&r->on_statuses, 0, sizeof(r->on_statuses));
    n = config_setting_length(s);
    for (int i = 0; i < n; i++) {
        path_index(epath, path, i);
        retry_item(ld, config_setting_get_elem(s, (unsigned)i), r, epath);
    }
}

/* listener.trusted_forwarders: [ "10.0.0.0/8", "::1" ], address blocks. */
static void key_trusted(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                        void *obj, const char *path)
{
    struct cfg_listener *l = obj;
    char d[CFG_QUOTE_MAX], epath[CFG_PATH_MAX];
    const char *why;
    int n;

    (void)k;
    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        cfg_err(ld, s, path, "expected a list of address blocks such as [ \"10.0.0.0/8\" ], got %s",
                describe(s, d, sizeof(d)));
        return;
    }
    n = config_setting_length(s);
    if (n == 0)
        return;
    l->trusted = arena_calloc(ld->arena, (size_t)n, sizeof(*l->trusted));
    if (!l->trusted) {
        ld->oom = true;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v;

        path_index(epath, path, i);
        if (!(v = get_string(ld, e, epath)))
            continue;
        if (cfg_parse_cidr_why(v, &l->trusted[l->ntrusted], &why) == -1) {
            cfg_err(ld, e, epath, "%s: %s", describe(e, d, sizeof(d)), why);
            continue;
        }
        l->ntrusted++;
    }
}

/* listener.pool, route.pool: a name resolved to an index of cfg->pools. */
static void key_pool_ref(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    struct cfg_suggest sg = {0};
    char d[CFG_QUOTE_MAX], hint[CFG_QUOTE_MAX + 32];
    const char *v = get_string(ld, s, path);
    int i;

    if (!v)
        return;
    i = cfg_pool_index(ld->cfg, v);
    if (i == -1) {
        sg.word = v;
        for (int j = 0; j < ld->cfg->npools; j++)
            suggest_try(&sg, ld->cfg->pools[j].name);
        cfg_err(ld, s, path, "unknown pool %s%s", describe(s, d, sizeof(d)),
                suggest_text(&sg, hint, sizeof(hint)));
        return;
    }
    *(int *)field(obj, k) = i;
}

static const struct cfg_enum_name tls_version_names[] = {
    {"1.2", 0x0303},
    {"1.3", 0x0304},
    {NULL, 0},
};

static const struct cfg_key tls_cert_keys[] = {
#define TC(...) CFG_KEY(struct cfg_tls_cert, __VA_ARGS__)
    TC("cert", key_file, cert, .required = true),
    TC("key", key_file, key, .required = true),
#undef TC
};
static const struct cfg_group tls_cert_group = {tls_cert_keys, CFG_NKEYS(tls_cert_keys)};

static int get_list(struct cfg_loader *ld, const config_setting_t *s, const char *path, int min,
                    const char *what, void **arr, size_t size);

/* tls.certs = ( { cert = "..."; key = "..."; }, ... ) */
static void key_tls_certs(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                          void *obj, const char *path)
{
    struct cfg_tls *t = obj;
    char epath[CFG_PATH_MAX];
    void *arr;
    int n = get_list(ld, s, path, 1, "certificate", &arr, sizeof(struct cfg_tls_cert));

    (void)k;
    if (n <= 0)
        return;
    if (n > CFG_TLS_CERTS_MAX) {
        cfg_err(ld, s, path, "%d certificates, at most %d", n, CFG_TLS_CERTS_MAX);
        return;
    }
    t->certs = arr;
    t->ncerts = n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        t->certs[i].line = setting_line(e);
        path_index(epath, path, i);
        walk_group(ld, e, &tls_cert_group, &t->certs[i], epath);
    }
}

static const struct cfg_key tls_keys[] = {
#define T(...) CFG_KEY(struct cfg_tls, __VA_ARGS__)
    T("cert", key_file, cert),
    T("key", key_file, key),
    T("certs", key_tls_certs, certs),
    T("min_version", key_enum, min_version, .arg = tls_version_names),
    T("ciphers", key_text, ciphers),
    T("ciphersuites", key_text, ciphersuites),
    T("tickets", key_bool, tickets),
#undef T
};
static const struct cfg_group tls_group = {tls_keys, CFG_NKEYS(tls_keys)};

/* One certificate as cert/key, or several as certs: never both. */
static void key_tls(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                    void *obj, const char *path)
{
    struct cfg_listener *l = obj;
    struct cfg_tls *t = &l->tls;

    (void)k;
    l->tls_enabled = true;
    t->min_version = 0x0303;
    t->tickets = true;
    t->line = setting_line(s);
    walk_group(ld, s, &tls_group, t, path);
    bool one = config_setting_get_member(s, "cert") || config_setting_get_member(s, "key");
    if (one && config_setting_get_member(s, "certs")) {
        cfg_err(ld, s, path, "give cert and key, or certs, not both");
        return;
    }
    if (config_setting_get_member(s, "certs"))
        return;
    if (!config_setting_get_member(s, "cert") || !config_setting_get_member(s, "key")) {
        cfg_err(ld, s, path, "needs cert and key (or a certs list)");
        return;
    }
    if (!t->cert || !t->key)
        return; /* unreadable: reported already */
    if (!(t->certs = arena_calloc(ld->arena, 1, sizeof(*t->certs)))) {
        ld->oom = true;
        return;
    }
    t->certs[0] = (struct cfg_tls_cert){.cert = t->cert, .key = t->key, .line = t->line};
    t->ncerts = 1;
}

static const struct cfg_key backend_tls_keys[] = {
#define BT(...) CFG_KEY(struct cfg_backend_tls, __VA_ARGS__)
    BT("verify", key_bool, verify),
    BT("ca", key_file, ca),
    BT("sni", key_host, sni),
    BT("cert", key_file, cert),
    BT("key", key_file, key),
    BT("min_version", key_enum, min_version, .arg = tls_version_names),
#undef BT
};
static const struct cfg_group backend_tls_group = {backend_tls_keys, CFG_NKEYS(backend_tls_keys)};

static void key_backend_tls(struct cfg_loader *ld, const config_setting_t *s,
                            const struct cfg_key *k, void *obj, const char *path)
{
    struct cfg_backend_tls *t = field(obj, k);

    t->enabled = true;
    t->verify = true;
    t->min_version = 0x0303;
    t->line = setting_line(s);
    walk_group(ld, s, &backend_tls_group, t, path);
    if (!config_setting_get_member(s, "cert") != !config_setting_get_member(s, "key"))
        cfg_err(ld, s, path, "a client certificate needs both cert and key");
}

/* ------------------------------------------------------------------------ */
/* lists of groups: pools, backends, listeners, routes                      */

/* "pools.api" when the element has a valid name, else "pools[0]". */
static void elem_path(char *out, const char *parent, const config_setting_t *e, int i)
{
    const config_setting_t *n =
        config_setting_is_group(e) ? config_setting_get_member(e, "name") : NULL;
    const char *name =
        n && config_setting_type(n) == CONFIG_TYPE_STRING ? config_setting_get_string(n) : NULL;

    if (name && name_is_valid(name))
        path_join(out, parent, name);
    else
        path_index(out, parent, i);
}

/* The setting to blame for a duplicate: the element's name, else itself. */
static const config_setting_t *name_setting(const config_setting_t *e)
{
    const config_setting_t *n =
        config_setting_is_group(e) ? config_setting_get_member(e, "name") : NULL;
    return n ? n : e;
}

/*
 * A list of groups, with room for its elements in the arena. Returns the
 * element count, 0 for an empty list allowed by MIN == 0, or -1 after
 * reporting.
 */
static int get_list(struct cfg_loader *ld, const config_setting_t *s, const char *path, int min,
                    const char *what, void **arr, size_t size)
{
    char d[CFG_QUOTE_MAX];
    int n;

    *arr = NULL;
    if (!config_setting_is_list(s)) {
        cfg_err(ld, s, path, "expected a list ( { ... }, ... ), got %s", describe(s, d, sizeof(d)));
        return -1;
    }
    n = config_setting_length(s);
    if (n < min) {
        cfg_err(ld, s, path, "needs at least one %s", what);
        return -1;
    }
    if (n == 0)
        return 0;
    *arr = arena_calloc(ld->arena, (size_t)n, size);
    if (!*arr) {
        ld->oom = true;
        return -1;
    }
    return n;
}

static const struct cfg_key route_keys[] = {
#define R(...) CFG_KEY(struct cfg_route, __VA_ARGS__)
    R("host", key_host, host),
    R("path_prefix", key_path, path_prefix),
    R("pool", key_pool_ref, pool, .required = true),
#undef R
};
static const struct cfg_group route_group = {route_keys, CFG_NKEYS(route_keys)};

static void key_routes(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                       void *obj, const char *path)
{
    struct cfg_listener *l = obj;
    char epath[CFG_PATH_MAX];
    void *arr;
    int n = get_list(ld, s, path, 0, "route", &arr, sizeof(struct cfg_route));

    (void)k;
    if (n <= 0)
        return;
    l->routes = arr;
    l->nroutes = n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cfg_route *r = &l->routes[i];

        r->pool = -1;
        r->line = setting_line(e);
        path_index(epath, path, i);
        walk_group(ld, e, &route_group, r, epath);
        if (config_setting_is_group(e) && !config_setting_get_member(e, "host") &&
            !config_setting_get_member(e, "path_prefix"))
            cfg_err(ld, e, epath, "a route needs host, path_prefix or both");
        if (r->path_prefix)
            r->path_prefix_len = strlen(r->path_prefix);
    }
}

static const struct cfg_key backend_keys[] = {
#define BE(...) CFG_KEY(struct cfg_backend, __VA_ARGS__)
    BE("name", key_name, name, .required = true),
    BE("address", key_backend_addr, addr, .required = true),
    BE("weight", key_u32, weight, .lo = 0, .hi = 1000),
    BE("zone", key_label, zone),
    BE("region", key_label, region),
    BE("state", key_enum, state, .arg = state_names),
#undef BE
};
static const struct cfg_group backend_group = {backend_keys, CFG_NKEYS(backend_keys)};

static void key_backends(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    struct cfg_pool *p = obj;
    char epath[CFG_PATH_MAX];
    void *arr;
    /* empty is fine with discover: pool_finish() says when it is not */
    int n = get_list(ld, s, path, 0, "backend", &arr, sizeof(struct cfg_backend));

    (void)k;
    if (n <= 0)
        return;
    p->backends = arr;
    p->nbackends = n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cfg_backend *b = &p->backends[i];

        b->weight = 100;
        b->zone = "";
        b->region = "";
        b->state = CFG_ADMIN_ACTIVE;
        b->line = setting_line(e);
        elem_path(epath, path, e, i);
        walk_group(ld, e, &backend_group, b, epath);
        for (int j = 0; b->name && j < i; j++)
            if (p->backends[j].name && strcmp(p->backends[j].name, b->name) == 0)
                cfg_err(ld, name_setting(e), epath,
                        "duplicate backend name \"%s\" in this pool (first at line %d)", b->name,
                        p->backends[j].line);
    }
}

static const struct cfg_key breaker_keys[] = {
#define B(...) CFG_KEY(struct cfg_breaker, __VA_ARGS__)
    B("consecutive_failures", key_u32, consecutive_failures, .lo = 0, .hi = CFG_COUNT_MAX),
    B("failure_rate", key_double, failure_rate, .lo = 0, .hi = 1),
    B("min_requests", key_u32, min_requests, .lo = 1, .hi = CFG_COUNT_MAX),
    B("window", key_duration, window_ms, .lo = 1),
    B("slow_call", key_duration, slow_call_ms, .lo = 1),
    B("slow_call_rate", key_double, slow_call_rate, .lo = 0, .hi = 1),
    B("open_for", key_duration, open_for_ms, .lo = 1),
    B("max_open_for", key_duration, max_open_for_ms, .lo = 1),
    B("half_open_probes", key_u32, half_open_probes, .lo = 1, .hi = 1000),
    B("failure_statuses", key_status_set, failure_statuses),
#undef B
};

static const struct cfg_key outlier_keys[] = {
#define O(...) CFG_KEY(struct cfg_outlier, __VA_ARGS__)
    O("eject", key_bool, eject),
    O("max_ejected", key_double, max_ejected, .lo = 0, .hi = 1),
#undef O
};

static const struct cfg_key limits_keys[] = {
#define L(...) CFG_KEY(struct cfg_limits, __VA_ARGS__)
    L("max_connections", key_u32, max_connections, .lo = 1, .hi = CFG_BIG_MAX),
    L("max_inflight", key_u32, max_inflight, .lo = 1, .hi = CFG_BIG_MAX),
    L("max_pending", key_u32, max_pending, .lo = 0, .hi = CFG_BIG_MAX),
    L("pending_timeout", key_duration, pending_timeout_ms, .lo = 1),
#undef L
};

static const struct cfg_key retry_keys[] = {
#define RT(...) CFG_KEY(struct cfg_retry, __VA_ARGS__)
    RT("attempts", key_u32, attempts, .lo = 0, .hi = 10),
    RT("budget", key_double, budget, .lo = 0, .hi = 1),
    RT("on", key_retry_on, on),
#undef RT
};

static const struct cfg_key health_keys[] = {
#define H(...) CFG_KEY(struct cfg_health, __VA_ARGS__)
    H("type", key_enum, type, .arg = health_names),
    H("path", key_path, path),
    H("host", key_host, host),
    H("expect", key_status_set, expect),
    H("interval", key_duration, interval_ms, .lo = 1),
    H("timeout", key_duration, timeout_ms, .lo = 1),
    H("rise", key_u32, rise, .lo = 1, .hi = 100),
    H("fall", key_u32, fall, .lo = 1, .hi = 100),
    H("jitter", key_double, jitter, .lo = 0, .hi = 0.5),
#undef H
};

/* discover.template: what each backend found gets (name and address come from the answer) */
static const struct cfg_key template_keys[] = {
#define TM(...) CFG_KEY(struct cfg_backend, __VA_ARGS__)
    TM("weight", key_u32, weight, .lo = 0, .hi = 1000),
    TM("zone", key_label, zone),
    TM("region", key_label, region),
    TM("state", key_enum, state, .arg = state_names),
#undef TM
};
static const struct cfg_group template_group = {template_keys, CFG_NKEYS(template_keys)};

static void key_dns_name(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX];
    const char *v = get_string(ld, s, path);

    if (!v)
        return;
    if (!dns_name_is_valid(v)) {
        cfg_err(ld, s, path,
                "%s is not a DNS name (labels of letters, digits, '-' and '_' joined by dots, "
                "at most 253 characters)",
                describe(s, d, sizeof(d)));
        return;
    }
    *(const char **)field(obj, k) = keep(ld, v);
}

static const struct cfg_key discover_keys[] = {
#define D(...) CFG_KEY(struct cfg_discover, __VA_ARGS__)
    D("name", key_dns_name, name, .required = true),
    D("type", key_enum, type, .arg = dns_type_names),
    D("port", key_u32, port, .lo = 1, .hi = 65535),
    D("interval", key_duration, interval_ms, .lo = 1),
    D("keep_stale", key_duration, keep_stale_ms, .lo = 0),
    D("max_changes_per_minute", key_u32, max_changes, .lo = 0, .hi = 60),
    D("template", key_group, tmpl, .arg = &template_group),
#undef D
};
static const struct cfg_group discover_group = {discover_keys, CFG_NKEYS(discover_keys)};

static void key_discover(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                         void *obj, const char *path)
{
    struct cfg_discover *d = field(obj, k);

    d->enabled = true;
    d->type = CFG_DNS_A;
    d->keep_stale_ms = 300000;
    d->max_changes = 10;
    d->tmpl.weight = 100;
    d->tmpl.zone = "";
    d->tmpl.region = "";
    d->tmpl.state = CFG_ADMIN_ACTIVE;
    d->line = setting_line(s);
    walk_group(ld, s, &discover_group, d, path);
}

static const struct cfg_group breaker_group = {breaker_keys, CFG_NKEYS(breaker_keys)};
static const struct cfg_group outlier_group = {outlier_keys, CFG_NKEYS(outlier_keys)};
static const struct cfg_group limits_group = {limits_keys, CFG_NKEYS(limits_keys)};
static const struct cfg_group retry_group = {retry_keys, CFG_NKEYS(retry_keys)};
static const struct cfg_group health_group = {health_keys, CFG_NKEYS(health_keys)};

static const struct cfg_key pool_keys[] = {
#define P(...) CFG_KEY(struct cfg_pool, __VA_ARGS__)
    P("name", key_name, name, .required = true),
    P("balance", key_enum, balance, .arg = balance_names),
    P("hash_key", key_hash_key, hash_src),
    P("hash_balance", key_double_min, hash_balance, .lo = 1),
    P("locality", key_enum, locality, .arg = locality_names),
    P("panic_threshold", key_double, panic_threshold, .lo = 0, .hi = 1),
    P("slow_start", key_duration, slow_start_ms, .lo = 0),
    P("breaker", key_group, breaker, .arg = &breaker_group),
    P("outlier", key_group, outlier, .arg = &outlier_group),
    P("limits", key_group, limits, .arg = &limits_group),
    P("retry", key_group, retry, .arg = &retry_group),
    P("health", key_group, health, .arg = &health_group),
    P("tls", key_backend_tls, tls),
    P("backends", key_backends, backends),
    P("discover", key_discover, discover),
#undef P
};
static const struct cfg_group pool_group = {pool_keys, CFG_NKEYS(pool_keys)};

static void pool_set_defaults(struct cfg_pool *p)
{
    p->balance = CFG_BAL_ROUND_ROBIN;
    p->hash_src = CFG_HASH_HEADER;
    p->hash_name = "X-Partition-Key";
    p->hash_balance = 1.25;
    p->locality = CFG_LOC_ZONE_AWARE;
    p->panic_threshold = 0.5;
    p->slow_start_ms = 10000;
    p->outlier.eject = false;
    p->outlier.max_ejected = 0.2;

    p->breaker.consecutive_failures = 5;
    p->breaker.failure_rate = 0.5;
    p->breaker.min_requests = 20;
    p->breaker.window_ms = 10000;
    p->breaker.slow_call_ms = 2000;
    p->breaker.slow_call_rate = 0.9;
    p->breaker.open_for_ms = 5000;
    p->breaker.max_open_for_ms = 60000;
    p->breaker.half_open_probes = 3;
    cfg_parse_status_set("500-599", &p->breaker.failure_statuses);

    p->limits.max_connections = 1000;
    p->limits.max_inflight = 1000;
    p->limits.max_pending = 100;
    p->limits.pending_timeout_ms = 500;

    p->retry.attempts = 2;
    p->retry.budget = 0.2;
    p->retry.on = CFG_RETRY_CONNECT_FAILURE | CFG_RETRY_RESET;
    cfg_parse_status_set("503", &p->retry.on_statuses);

    p->health.type = CFG_HC_HTTP;
    p->health.path = "/healthz";
    p->health.host = NULL;
    cfg_parse_status_set("200-399", &p->health.expect);
    p->health.interval_ms = 2000;
    p->health.timeout_ms = 1000;
    p->health.rise = 2;
    p->health.fall = 3;
    p->health.jitter = 0.1;
}

static const config_setting_t *member(const config_setting_t *g, const char *name)
{
    return g && config_setting_is_group(g) ? config_setting_get_member(g, name) : NULL;
}

/* open_for doubles on each re-trip up to max_open_for, so max < first is
 * a contradiction. Blame whichever of the two the file sets. */
static void check_breaker(struct cfg_loader *ld, const config_setting_t *e,
                          const struct cfg_pool *p, const char *path)
{
    const config_setting_t *b = member(e, "breaker");
    const config_setting_t *s = member(b, "max_open_for");
    const char *key = "max_open_for";
    char bpath[CFG_PATH_MAX], kpath[CFG_PATH_MAX], t1[32], t2[32];

    if (p->breaker.max_open_for_ms >= p->breaker.open_for_ms)
        return;
    if (!s) {
        s = member(b, "open_for");
        key = "open_for";
    }
    path_join(bpath, path, "breaker");
    path_join(kpath, bpath, key);
    cfg_err(ld, s ? s : e, kpath, "max_open_for (%s) is shorter than open_for (%s)",
            fmt_ms(p->breaker.max_open_for_ms, t1, sizeof(t1)),
            fmt_ms(p->breaker.open_for_ms, t2, sizeof(t2)));
}

/*
 * What a pool needs as a whole: backends, a discover, or both; a discover
 * whose keys fit its type. Then backends named by a DNS name move from
 * `backends` to `named`: every backend of a snapshot has an address.
 */
static void pool_finish(struct cfg_loader *ld, const config_setting_t *e, struct cfg_pool *p,
                        const char *path)
{
    const config_setting_t *list = member(e, "backends"), *ds = member(e, "discover");
    const struct cfg_discover *d = &p->discover;
    char kpath[CFG_PATH_MAX], dpath[CFG_PATH_MAX];
    int named = 0, j = 0;

    if (!list && !ds && config_setting_is_group(e))
        cfg_err(ld, e, path, "missing required setting \"backends\" (or \"discover\")");
    else if (list && config_setting_is_list(list) && config_setting_length(list) == 0 && !ds) {
        path_join(kpath, path, "backends");
        cfg_err(ld, list, kpath, "needs at least one backend (or a discover)");
    }
    if (d->enabled && config_setting_is_group(ds)) {
        const config_setting_t *port = member(ds, "port");
        const config_setting_t *w = member(member(ds, "template"), "weight");

        path_join(dpath, path, "discover");
        if (d->type == CFG_DNS_SRV && port) {
            path_join(kpath, dpath, "port");
            cfg_err(ld, port, kpath, "not with type \"SRV\": the SRV records give the port");
        } else if (d->type != CFG_DNS_SRV && !port && d->name) {
            cfg_err(ld, ds, dpath,
                    "missing required setting \"port\" (the backends' port, for "
                    "type \"%s\")",
                    cfg_dns_type_name(d->type));
        }
        if (d->type == CFG_DNS_SRV && w) {
            path_join(kpath, dpath, "template.weight");
            cfg_err(ld, w, kpath, "not with type \"SRV\": the SRV records give the weight");
        }
    }
    for (int i = 0; i < p->nbackends; i++)
        named += p->backends[i].host != NULL;
    if (!named)
        return;
    p->named = arena_calloc(ld->arena, (size_t)named, sizeof(*p->named));
    if (!p->named) {
        ld->oom = true;
        return;
    }
    for (int i = 0; i < p->nbackends; i++) {
        if (p->backends[i].host)
            p->named[p->nnamed++] = p->backends[i];
        else
            p->backends[j++] = p->backends[i];
    }
    p->nbackends = j;
}

static void key_pools(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                      void *obj, const char *path)
{
    struct cfg *cfg = obj;
    char epath[CFG_PATH_MAX];
    void *arr;
    int n = get_list(ld, s, path, 1, "pool", &arr, sizeof(struct cfg_pool));

    (void)k;
    if (n <= 0)
        return;
    cfg->pools = arr;
    cfg->npools = n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cfg_pool *p = &cfg->pools[i];

        pool_set_defaults(p);
        p->line = setting_line(e);
        elem_path(epath, path, e, i);
        walk_group(ld, e, &pool_group, p, epath);
        check_breaker(ld, e, p, epath);
        pool_finish(ld, e, p, epath);
        for (int j = 0; p->name && j < i; j++)
            if (cfg->pools[j].name && strcmp(cfg->pools[j].name, p->name) == 0)
                cfg_err(ld, name_setting(e), epath, "duplicate pool name \"%s\" (first at line %d)",
                        p->name, cfg->pools[j].line);
    }
}

static const struct cfg_key listener_keys[] = {
#define LI(...) CFG_KEY(struct cfg_listener, __VA_ARGS__)
    LI("name", key_name, name, .required = true),
    LI("listen", key_listen_addr, addr, .required = true),
    LI("pool", key_pool_ref, pool, .required = true),
    LI("tls", key_tls, tls),
    LI("trusted_forwarders", key_trusted, trusted),
    LI("routes", key_routes, routes),
#undef LI
};
static const struct cfg_group listener_group = {listener_keys, CFG_NKEYS(listener_keys)};

/* Pools are known by now, so listener and route pool names resolve. */
static void walk_listeners(struct cfg_loader *ld, const config_setting_t *s)
{
    struct cfg *cfg = ld->cfg;
    char epath[CFG_PATH_MAX];
    void *arr;
    int n = get_list(ld, s, "listeners", 1, "listener", &arr, sizeof(struct cfg_listener));

    if (n <= 0)
        return;
    cfg->listeners = arr;
    cfg->nlisteners = n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cfg_listener *l = &cfg->listeners[i];

        l->pool = -1;
        l->line = setting_line(e);
        elem_path(epath, "listeners", e, i);
        walk_group(ld, e, &listener_group, l, epath);
        for (int j = 0; l->name && j < i; j++)
            if (cfg->listeners[j].name && strcmp(cfg->listeners[j].name, l->name) == 0)
                cfg_err(ld, name_setting(e), epath,
                        "duplicate listener name \"%s\" (first at line %d)", l->name,
                        cfg->listeners[j].line);
    }
}

static void key_listeners(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                          void *obj, const char *path)
{
    (void)k;
    (void)obj;
    (void)path;
    ld->listeners = s;
}

/* ------------------------------------------------------------------------ */
/* DNS: resolvers and zones by address block                                */

#define CFG_ZONE_NETS_MAX 4096

/* resolvers = [ "10.0.0.10:53", "10.0.0.11", "[fd00::53]" ]: port 53 unless given. */
static void key_resolvers(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                          void *obj, const char *path)
{
    struct cfg *cfg = obj;
    char d[CFG_QUOTE_MAX], epath[CFG_PATH_MAX], buf[sizeof(cfg->resolvers[0].text)];
    const char *why;
    int n;

    (void)k;
    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        cfg_err(ld, s, path, "expected a list of addresses such as [ \"10.0.0.10:53\" ], got %s",
                describe(s, d, sizeof(d)));
        return;
    }
    n = config_setting_length(s);
    if (n > CFG_RESOLVERS_MAX) {
        cfg_err(ld, s, path, "%d resolvers, at most %d", n, CFG_RESOLVERS_MAX);
        return;
    }
    if (n == 0)
        return;
    if (!(cfg->resolvers = arena_calloc(ld->arena, (size_t)n, sizeof(*cfg->resolvers)))) {
        ld->oom = true;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cfg_addr *a = &cfg->resolvers[cfg->nresolvers];
        const char *v;

        path_index(epath, path, i);
        if (!(v = get_string(ld, e, epath)))
            continue;
        if (v[0] == '[' ? !strstr(v, "]:") : !strchr(v, ':'))
            snprintf(buf, sizeof(buf), "%s:53", v);
        else
            snprintf(buf, sizeof(buf), "%s", v);
        if (cfg_parse_addr_why(buf, a, &why) == -1) {
            cfg_err(ld, e, epath, "%s: %s", describe(e, d, sizeof(d)), why);
            continue;
        }
        if (a->sa.ss_family == AF_UNIX || addr_is_wildcard(a)) {
            cfg_err(ld, e, epath, "%s: a resolver is a numeric IP address, with a port or not",
                    describe(e, d, sizeof(d)));
            continue;
        }
        cfg->nresolvers++;
    }
}

/* Blocks in the array ARR belong to ZONE (and REGION). */
static void zone_add(struct cfg_loader *ld, const config_setting_t *arr, const char *zone,
                     const char *region, const char *path)
{
    struct cfg *cfg = ld->cfg;
    char d[CFG_QUOTE_MAX], epath[CFG_PATH_MAX];
    const char *why;
    int n;

    if (!config_setting_is_array(arr) && !config_setting_is_list(arr)) {
        cfg_err(ld, arr, path,
                "expected a list of address blocks such as [ \"10.1.0.0/16\" ], got %s",
                describe(arr, d, sizeof(d)));
        return;
    }
    n = config_setting_length(arr);
    for (int i = 0; i < n && cfg->zone_nets; i++) {
        const config_setting_t *e = config_setting_get_elem(arr, (unsigned)i);
        struct cfg_zone_net *z = &cfg->zone_nets[cfg->nzone_nets];
        const char *v;
        int dup = -1;

        path_index(epath, path, i);
        if (!(v = get_string(ld, e, epath)))
            continue;
        if (cfg_parse_cidr_why(v, &z->net, &why) == -1) {
            cfg_err(ld, e, epath, "%s: %s", describe(e, d, sizeof(d)), why);
            continue;
        }
        for (int j = 0; j < cfg->nzone_nets && dup < 0; j++)
            if (cfg->zone_nets[j].net.family == z->net.family &&
                cfg->zone_nets[j].net.bits == z->net.bits &&
                memcmp(cfg->zone_nets[j].net.addr, z->net.addr, sizeof(z->net.addr)) == 0)
                dup = j;
        if (dup >= 0) {
            cfg_err(ld, e, epath, "%s is already in zone \"%s\" (line %d)",
                    describe(e, d, sizeof(d)), cfg->zone_nets[dup].zone, cfg->zone_nets[dup].line);
            continue;
        }
        z->zone = zone;
        z->region = region;
        z->line = setting_line(e);
        cfg->nzone_nets++;
    }
}

/* One element of the list form of zones. */
struct cfg_zone_entry {
    const char *zone;
    const char *region;
    const config_setting_t *subnets;
};

static void key_setting(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                        void *obj, const char *path)
{
    (void)ld;
    (void)path;
    *(const config_setting_t **)field(obj, k) = s;
}

static const struct cfg_key zone_entry_keys[] = {
#define Z(...) CFG_KEY(struct cfg_zone_entry, __VA_ARGS__)
    Z("zone", key_name, zone, .required = true),
    Z("region", key_label, region),
    Z("subnets", key_setting, subnets, .required = true),
#undef Z
};
static const struct cfg_group zone_entry_group = {zone_entry_keys, CFG_NKEYS(zone_entry_keys)};

/* Room for every block the zones setting S lists, or -1 when S is not usable. */
static int zones_count(const config_setting_t *s)
{
    int n = 0;

    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const config_setting_t *a = config_setting_is_group(s) ? e : member(e, "subnets");

        if (a && (config_setting_is_array(a) || config_setting_is_list(a)))
            n += config_setting_length(a);
    }
    return n;
}

/*
 * zones = { zone-a = [ "10.1.0.0/16" ]; zone-b = [ "10.2.0.0/16" ]; };
 * zones = ( { zone = "zone-a"; region = "eu-1"; subnets = [ "10.1.0.0/16" ]; } );
 * (libconfig setting names cannot be quoted: the list form takes any zone name.)
 */
static void key_zones(struct cfg_loader *ld, const config_setting_t *s, const struct cfg_key *k,
                      void *obj, const char *path)
{
    struct cfg *cfg = obj;
    char d[CFG_QUOTE_MAX], epath[CFG_PATH_MAX];
    int total;

    (void)k;
    if (!config_setting_is_group(s) && !config_setting_is_list(s)) {
        cfg_err(ld, s, path,
                "expected a group { ZONE = [ \"10.1.0.0/16\" ]; } or a list ( { zone = \"...\"; "
                "subnets = [ ... ]; } ), got %s",
                describe(s, d, sizeof(d)));
        return;
    }
    total = zones_count(s);
    if (total > CFG_ZONE_NETS_MAX) {
        cfg_err(ld, s, path, "%d address blocks, at most %d", total, CFG_ZONE_NETS_MAX);
        return;
    }
    if (total > 0 &&
        !(cfg->zone_nets = arena_calloc(ld->arena, (size_t)total, sizeof(*cfg->zone_nets)))) {
        ld->oom = true;
        return;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

        if (config_setting_is_group(s)) {
            const char *name = config_setting_name(e);

            path_join(epath, path, name ? name : "?");
            if (!name || !name_is_valid(name)) {
                cfg_err(ld, e, epath,
                        "%s is not a valid zone (1-%d characters from A-Z a-z 0-9 . _ -)",
                        quote(name ? name : "", d, sizeof(d)), CFG_NAME_MAX - 1);
                continue;
            }
            zone_add(ld, e, keep(ld, name), "", epath);
        } else {
            struct cfg_zone_entry z = {.region = ""};

            path_index(epath, path, i);
            walk_group(ld, e, &zone_entry_group, &z, epath);
            if (z.zone && z.subnets) {
                char spath[CFG_PATH_MAX];

                path_join(spath, epath, "subnets");
                zone_add(ld, z.subnets, z.zone, z.region, spath);
            }
        }
    }
}

bool cfg_zone_of(const struct cfg *cfg, const struct sockaddr *addr, const char **zone,
                 const char **region)
{
    const struct cfg_zone_net *best = NULL;
    const void *a;

    if (addr->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)(const void *)addr)->sin_addr;
    else if (addr->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
    else
        return false;
    for (int i = 0; i < cfg->nzone_nets; i++) {
        const struct cfg_zone_net *z = &cfg->zone_nets[i];

        if ((!best || z->net.bits > best->net.bits) &&
            cfg_cidr_contains(&z->net, addr->sa_family, a))
            best = z;
    }
    if (!best)
        return false;
    *zone = best->zone;
    *region = best->region;
    return true;
}

/* Backends of the file without a zone take the zone of their address's block. */
static void apply_zone_nets(struct cfg *cfg)
{
    for (int i = 0; cfg->nzone_nets && i < cfg->npools; i++)
        for (int j = 0; j < cfg->pools[i].nbackends; j++) {
            struct cfg_backend *b = &cfg->pools[i].backends[j];
            const char *zone, *region;

            if (b->zone[0] ||
                !cfg_zone_of(cfg, (const struct sockaddr *)&b->addr.sa, &zone, &region))
                continue;
            b->zone = zone;
            if (!b->region[0])
                b->region = region;
        }
}

/* ------------------------------------------------------------------------ */
/* the top level                                                            */

#define C(...) CFG_KEY(struct cfg, __VA_ARGS__)

static const struct cfg_key lb_keys[] = {
    C("workers", key_u32, workers, .lo = 0, .hi = CFG_MAX_WORKERS),
    C("zone", key_label, zone),
    C("region", key_label, region),
    C("max_connections", key_u32, max_connections, .lo = 1, .hi = CFG_BIG_MAX),
    C("user", key_text, user),
    C("watch_config", key_bool, watch_config),
    C("splice", key_enum, splice, .arg = splice_names),
};

static const struct cfg_key log_keys[] = {
    C("level", key_enum, log_level, .arg = level_names),
    C("access", key_access, log_access),
    C("format", key_enum, log_format, .arg = format_names),
};

static const struct cfg_key admin_keys[] = {
    C("listen", key_listen_addr, admin_listen),
    C("token", key_token, admin_token),
    C("token_file", key_token_file, admin_token_file),
};

static const struct cfg_key timeout_keys[] = {
    C("connect", key_duration, connect_ms, .lo = 1),
    C("client_header", key_duration, client_header_ms, .lo = 1),
    C("client_idle", key_duration, client_idle_ms, .lo = 1),
    C("backend", key_duration, backend_ms, .lo = 1),
    C("drain", key_duration, drain_ms, .lo = 1),
    C("tunnel", key_duration, tunnel_ms, .lo = 1),
    C("backend_idle", key_duration, backend_idle_ms, .lo = 1),
    C("shutdown_grace", key_duration, shutdown_grace_ms, .lo = 0),
};

static const struct cfg_group lb_group = {lb_keys, CFG_NKEYS(lb_keys)};
static const struct cfg_group log_group = {log_keys, CFG_NKEYS(log_keys)};
static const struct cfg_group admin_group = {admin_keys, CFG_NKEYS(admin_keys)};
static const struct cfg_group timeout_group = {timeout_keys, CFG_NKEYS(timeout_keys)};

/* The four plain groups keep their values directly in struct cfg. */
static const struct cfg_key root_keys[] = {
    {.name = "lb", .parse = key_group, .arg = &lb_group},
    {.name = "log", .parse = key_group, .arg = &log_group},
    {.name = "admin", .parse = key_group, .arg = &admin_group},
    {.name = "timeouts", .parse = key_group, .arg = &timeout_group},
    {.name = "listeners", .parse = key_listeners, .required = true},
    {.name = "pools", .parse = key_pools, .required = true},
    {.name = "resolvers", .parse = key_resolvers},
    {.name = "zones", .parse = key_zones},
};
static const struct cfg_group root_group = {root_keys, CFG_NKEYS(root_keys)};

#undef C

static void cfg_set_defaults(struct cfg *c)
{
    c->workers = 0;
    c->zone = "";
    c->region = "";
    c->max_connections = 20000;
    c->user = NULL;
    c->splice = CFG_SPLICE_AUTO;
    c->log_level = CFG_LOG_INFO;
    c->log_access = NULL;
    c->log_format = CFG_FMT_TEXT;
    cfg_parse_addr("127.0.0.1:9900", &c->admin_listen);
    c->admin_token = NULL;
    c->connect_ms = 1000;
    c->client_header_ms = 10000;
    c->client_idle_ms = 60000;
    c->backend_ms = 30000;
    c->drain_ms = 30000;
    c->tunnel_ms = 3600000;
    c->backend_idle_ms = 10000;
    c->shutdown_grace_ms = 0;
    c->watch_config = false;
}

static void unknown_key(struct cfg_loader *ld, const config_setting_t *s,
                        const struct cfg_group *def, const char *path)
{
    struct cfg_suggest sg = {0};
    char q[CFG_QUOTE_MAX], hint[CFG_QUOTE_MAX + 32];
    const char *name = config_setting_name(s);

    sg.word = name ? name : "";
    for (size_t i = 0; i < def->n; i++)
        suggest_try(&sg, def->keys[i].name);
    cfg_err(ld, s, path, "unknown setting %s%s", quote(sg.word, q, sizeof(q)),
            suggest_text(&sg, hint, sizeof(hint)));
}

static const struct cfg_key *find_key(const struct cfg_group *def, const char *name)
{
    for (size_t i = 0; name && i < def->n; i++)
        if (strcmp(def->keys[i].name, name) == 0)
            return &def->keys[i];
    return NULL;
}

/* Check every member of group G against DEF, storing values into OBJ. */
static void walk_group(struct cfg_loader *ld, const config_setting_t *g,
                       const struct cfg_group *def, void *obj, const char *path)
{
    char d[CFG_QUOTE_MAX], cpath[CFG_PATH_MAX];
    int n;

    if (!config_setting_is_group(g)) {
        cfg_err(ld, g, path, "expected a group { ... }, got %s", describe(g, d, sizeof(d)));
        return;
    }
    n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const struct cfg_key *k = find_key(def, config_setting_name(s));

        if (!k) {
            unknown_key(ld, s, def, path);
            continue;
        }
        path_join(cpath, path, k->name);
        k->parse(ld, s, k, obj, cpath);
    }
    for (size_t i = 0; i < def->n; i++)
        if (def->keys[i].required && !config_setting_get_member(g, def->keys[i].name))
            cfg_err(ld, g, path, "missing required setting \"%s\"", def->keys[i].name);
}

static const config_setting_t *lookup(const config_setting_t *g, const char *a, const char *b)
{
    const config_setting_t *s = member(g, a);

    return b ? member(s, b) : s;
}

/* An admin that can change backends must not be reachable from the
 * network without a token. */
static void check_admin(struct cfg_loader *ld)
{
    struct cfg *cfg = ld->cfg;
    const config_setting_t *s = lookup(ld->root, "admin", "listen");
    const config_setting_t *tf = lookup(ld->root, "admin", "token_file");
    char q[CFG_QUOTE_MAX];

    if (tf && lookup(ld->root, "admin", "token"))
        cfg_err(ld, tf, "admin.token_file", "set admin.token or admin.token_file, not both");
    else if (ld->file_token)
        cfg->admin_token = ld->file_token;
    if (tf && !ld->file_token)
        return; /* reported already; no second error about a missing token */
    if (cfg->admin_token || cfg_addr_is_loopback(&cfg->admin_listen))
        return;
    cfg_err(ld, s ? s : ld->root, "admin.listen",
            "%s: admin on a non-loopback address needs admin.token",
            quote(cfg->admin_listen.text, q, sizeof(q)));
}

/* Two sockets on one address: the second bind would fail at start-up, or
 * worse, SO_REUSEPORT would silently split the traffic between them. */
static void check_listen_addrs(struct cfg_loader *ld)
{
    const struct cfg *cfg = ld->cfg;
    char lpath[CFG_PATH_MAX], path[CFG_PATH_MAX], q[CFG_QUOTE_MAX];

    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        const config_setting_t *e = config_setting_get_elem(ld->listeners, (unsigned)i);
        const config_setting_t *s = member(e, "listen");

        elem_path(lpath, "listeners", e, i);
        path_join(path, lpath, "listen");
        if (cfg_addr_equal(&l->addr, &cfg->admin_listen))
            cfg_err(ld, s, path, "%s is already used by admin.listen",
                    quote(l->addr.text, q, sizeof(q)));
        for (int j = 0; j < i; j++) {
            if (!cfg_addr_equal(&l->addr, &cfg->listeners[j].addr))
                continue;
            cfg_err(ld, s, path, "%s is already used by listener \"%s\" (line %d)",
                    quote(l->addr.text, q, sizeof(q)),
                    cfg->listeners[j].name ? cfg->listeners[j].name : "?", cfg->listeners[j].line);
            break;
        }
    }
}

static uint32_t workers_default(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (uint32_t)n;
}

/*
 * Walk a parsed libconfig tree into a new snapshot. Returns it, or NULL
 * with the errors appended to ERRS.
 */
static struct cfg *cfg_build(config_t *lc, const char *name, bool files_ok, struct cfg_errors *errs)
{
    struct cfg_loader *ld;
    struct cfg *cfg = NULL;

    ld = calloc(1, sizeof(*ld)); /* ~2 KB of messages: keep it off small stacks */
    if (!ld)
        goto fail_oom;
    ld->name = name;
    ld->files_ok = files_ok;
    ld->include_dir = config_get_include_dir(lc);
    ld->root = config_root_setting(lc);
    ld->arena = arena_new();
    if (!ld->arena)
        goto fail_arena;
    cfg = arena_calloc(ld->arena, 1, sizeof(*cfg));
    if (!cfg || !(cfg->path = arena_strdup(ld->arena, name)))
        goto fail_cfg;
    cfg->arena = ld->arena;
    ld->cfg = cfg;
    cfg_set_defaults(cfg);

    walk_group(ld, ld->root, &root_group, cfg, "");
    if (ld->listeners)
        walk_listeners(ld, ld->listeners);
    check_admin(ld);
    check_listen_addrs(ld);
    apply_zone_nets(cfg);
    if (cfg->workers == 0)
        cfg->workers = workers_default();

    if (ld->nmsgs || ld->dropped || ld->oom) {
        loader_finish(ld, errs);
        arena_free(ld->arena);
        cfg = NULL;
    }
    free(ld);
    return cfg;

fail_cfg:
    arena_free(ld->arena);
fail_arena:
    free(ld);
fail_oom:
    errs_push(errs, fmt("%s: out of memory while loading the configuration", name));
    return NULL;
}

/*
 * "FILE:LINE: syntax error[: detail]" from libconfig's report. In the main
 * file (TEXT), a common mistake found around the reported line moves the
 * line to where the mistake is and says what it probably is.
 */
static void syntax_error(const config_t *lc, const char *name, const char *text,
                         struct cfg_errors *errs)
{
    const char *file = config_error_file(lc) ? config_error_file(lc) : name, *sep;
    const char *dir = file_dir(config_get_include_dir(lc), name, file, &sep);
    const char *detail = config_error_text(lc) ? config_error_text(lc) : "syntax error";
    struct cfg_syntax_hint hint;

    if (config_error_type(lc) == CONFIG_ERR_FILE_IO) {
        errs_push(errs, fmt("%s%s%s: cannot read: %s", dir, sep, file, detail));
        return;
    }
    if (strcmp(detail, "syntax error") != 0) /* libconfig knows better */
        errs_push(errs, fmt("%s%s%s:%d: syntax error: %s", dir, sep, file, config_error_line(lc),
                            detail));
    else if (!config_error_file(lc) && cfg_syntax_explain(text, config_error_line(lc), &hint))
        errs_push(errs, fmt("%s:%d: syntax error: %s", name, hint.line, hint.text));
    else
        errs_push(errs, fmt("%s%s%s:%d: syntax error", dir, sep, file, config_error_line(lc)));
}

/* ------------------------------------------------------------------------ */
/* integer literals libconfig would wrap                                     */

/* Past the number at P (a libconfig integer, int64, hex or float literal);
 * *is_int tells whether it was an integer without the L suffix, and *big
 * whether that integer does not fit in 32 bits. */
static const char *scan_number(const char *p, bool *is_int, bool *big)
{
    unsigned long long v = 0, limit = 2147483647ULL;
    bool overflow = false;

    if (*p == '-' || *p == '+')
        limit += *p++ == '-';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        limit = 0xffffffffULL; /* libconfig keeps the low 32 bits of a hex literal */
        for (p += 2; isxdigit((unsigned char)*p); p++) {
            overflow |= v > (ULLONG_MAX >> 4);
            v = v * 16 + (unsigned long long)(isdigit((unsigned char)*p) ? *p - '0'
                                                                         : (*p | 0x20) - 'a' + 10);
        }
    } else {
        for (; isdigit((unsigned char)*p); p++) {
            overflow |= v > ULLONG_MAX / 10 - 1;
            v = v * 10 + (unsigned long long)(*p - '0');
        }
    }
    *is_int = *p != '.' && *p != 'e' && *p != 'E' && *p != 'L';
    *big = *is_int && (overflow || v > limit);
    return p + strspn(p, "0123456789.eE+-L");
}

/* Past a string literal at P (on its opening quote), counting newlines. */
static const char *scan_string(const char *p, int *line)
{
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
            p++;
        if (*p == '\n')
            (*line)++;
    }
    return *p ? p + 1 : p;
}

/* Past a comment at P, counting newlines; P itself when none starts there. */
static const char *scan_comment(const char *p, int *line)
{
    if (*p == '#' || (p[0] == '/' && p[1] == '/'))
        return p + strcspn(p, "\n");
    if (p[0] != '/' || p[1] != '*')
        return p;
    for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
        if (*p == '\n')
            (*line)++;
    return *p ? p + 2 : p;
}

/*
 * libconfig 1.5 silently wraps an integer literal that does not fit in 32
 * bits unless it carries an L suffix: "weight = 4294967396;" reads as 100.
 * No setting takes such a value, so report every one in TEXT (a file that
 * libconfig has already parsed). Returns the number reported.
 */
static int check_int_literals(const char *text, const char *name, struct cfg_errors *errs)
{
    const char *p = text, *q;
    int line = 1, bad = 0;
    bool is_int, big;

    while (*p) {
        if (*p == '\n') {
            line++;
            p++;
        } else if ((q = scan_comment(p, &line)) != p) {
            p = q;
        } else if (*p == '"') {
            p = scan_string(p, &line);
        } else if (isalpha((unsigned char)*p) || *p == '*' || *p == '_') {
            p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*");
        } else if (isdigit((unsigned char)*p) ||
                   ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
            q = scan_number(p, &is_int, &big);
            if (big && bad++ < CFG_MAX_ERRORS)
                errs_push(errs,
                          fmt("%s:%d: integer %.*s is out of range (-2147483648 to 2147483647)",
                              name, line, (int)(q - p > 40 ? 40 : q - p), p));
            p = q;
        } else {
            p++;
        }
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* entry points                                                              */

#define CFG_FILE_MAX (16 << 20) /* a bigger config file is a mistake */

/* The whole of PATH as a string, or NULL after reporting why not. */
static char *read_file(const char *path, struct cfg_errors *errs)
{
    size_t len = 0, cap = 0;
    char *buf = NULL, *grown;
    struct stat st;
    FILE *f;

    f = fopen(path, "r");
    if (!f) {
        errs_push(errs, fmt("%s: cannot open: %s", path, strerror(errno)));
        return NULL;
    }
    if (fstat(fileno(f), &st) == -1 || S_ISDIR(st.st_mode)) {
        errs_push(errs, fmt("%s: cannot read: %s", path,
                            S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno)));
        goto fail;
    }
    do {
        if (cap - len < 2) {
            cap = cap ? cap * 2 : 8192;
            if (cap > CFG_FILE_MAX) {
                errs_push(errs, fmt("%s: cannot read: larger than 16 MB", path));
                goto fail;
            }
            grown = realloc(buf, cap);
            if (!grown)
                goto fail_oom;
            buf = grown;
        }
        len += fread(buf + len, 1, cap - len - 1, f);
    } while (!feof(f) && !ferror(f));
    if (ferror(f)) {
        errs_push(errs, fmt("%s: cannot read: %s", path, strerror(errno)));
        goto fail;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        errs_push(errs, fmt("%s: cannot read: contains a NUL byte", path));
        goto fail;
    }
    fclose(f);
    return buf;

fail_oom:
    errs_push(errs, fmt("%s: out of memory while loading the configuration", path));
fail:
    free(buf);
    fclose(f);
    return NULL;
}

/* @include resolves against the including file's directory, not the cwd. */
static int set_include_dir(config_t *lc, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;

    if (!slash)
        return 0; /* relative to the cwd, which is the file's directory */
    dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (!dir)
        return -1;
    config_set_include_dir(lc, dir);
    free(dir);
    return 0;
}

/* Parse TEXT (named NAME in messages), then build the snapshot. PATH, when
 * not NULL, is the file TEXT came from: @include resolves next to it. */
static struct cfg *load_text(const char *text, const char *name, const char *path,
                             struct cfg_errors *errs)
{
    struct cfg *cfg = NULL;
    config_t lc;

    config_init(&lc);
    if (path && set_include_dir(&lc, path) == -1)
        errs_push(errs, fmt("%s: out of memory while loading the configuration", name));
    else if (config_read_string(&lc, text) != CONFIG_TRUE)
        syntax_error(&lc, name, text, errs);
    else if (check_int_literals(text, name, errs) == 0)
        cfg = cfg_build(&lc, name, path != NULL, errs);
    config_destroy(&lc);
    return cfg;
}

struct cfg *cfg_load(const char *path, struct cfg_errors *errs)
{
    struct cfg *cfg;
    char *text = read_file(path, errs);

    if (!text)
        return NULL;
    cfg = load_text(text, path, path, errs);
    free(text);
    return cfg;
}

/* Line of the first line-leading "@include" in TEXT, or 0. libconfig only
 * honours the directive at the start of a line (after blanks). */
static int find_include(const char *text)
{
    int line = 1;

    for (const char *p = text; p; line++) {
        p += strspn(p, " \t");
        if (strncmp(p, "@include", 8) == 0)
            return line;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

struct cfg *cfg_load_string(const char *text, const char *name, struct cfg_errors *errs)
{
    int line;

    if (!name)
        name = "(string)";
    if (!text) {
        errs_push(errs, fmt("%s: no configuration text", name));
        return NULL;
    }
    line = find_include(text);
    if (line) {
        errs_push(errs,
                  fmt("%s:%d: @include is not available when loading from a string", name, line));
        return NULL;
    }
    return load_text(text, name, NULL, errs);
}

struct cfg *cfg_derive(struct cfg *base, struct cfg_backend *const *backends, const int *nbackends)
{
    struct cfg_arena *a = arena_new();
    struct cfg *c = a ? arena_calloc(a, 1, sizeof(*c)) : NULL;
    struct cfg_pool *pools = c ? arena_calloc(a, (size_t)base->npools, sizeof(*pools)) : NULL;

    if (!pools)
        goto fail;
    *c = *base;
    memcpy(pools, base->pools, (size_t)base->npools * sizeof(*pools));
    c->pools = pools;
    c->arena = a;
    for (int i = 0; i < base->npools; i++) {
        struct cfg_pool *p = &pools[i];
        struct cfg_backend *b;

        if (backends[i] == base->pools[i].backends)
            continue;
        p->backends = NULL;
        p->nbackends = nbackends[i];
        if (!nbackends[i])
            continue;
        if (!(b = arena_calloc(a, (size_t)nbackends[i], sizeof(*b))))
            goto fail;
        for (int j = 0; j < nbackends[i]; j++) {
            b[j] = backends[i][j];
            if (!(b[j].name = arena_strdup(a, b[j].name)) ||
                !(b[j].zone = arena_strdup(a, b[j].zone ? b[j].zone : "")) ||
                !(b[j].region = arena_strdup(a, b[j].region ? b[j].region : "")) ||
                (b[j].host && !(b[j].host = arena_strdup(a, b[j].host))))
                goto fail;
        }
        p->backends = b;
    }
    a->parent = base->arena;
    atomic_fetch_add(&a->parent->refs, 1);
    return c;

fail:
    arena_free(a);
    return NULL;
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool cfg_same_backends(const struct cfg *a, const struct cfg *b)
{
    if (a->npools != b->npools)
        return false;
    for (int i = 0; i < a->npools; i++) {
        const struct cfg_pool *p = &a->pools[i], *q = &b->pools[i];

        if (p->nbackends != q->nbackends || !same_text(p->name, q->name))
            return false;
        for (int j = 0; j < p->nbackends; j++) {
            const struct cfg_backend *x = &p->backends[j], *y = &q->backends[j];

            if (!same_text(x->name, y->name) || x->addr.len != y->addr.len ||
                memcmp(&x->addr.sa, &y->addr.sa, x->addr.len) != 0 || x->weight != y->weight ||
                !same_text(x->zone, y->zone) || !same_text(x->region, y->region) ||
                x->state != y->state)
                return false;
        }
    }
    return true;
}

void cfg_free(struct cfg *cfg)
{
    if (cfg)
        arena_free(cfg->arena); /* cfg itself lives in the arena */
}

void cfg_errors_free(struct cfg_errors *errs)
{
    if (!errs)
        return;
    for (int i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
    errs->cap = 0;
}

int cfg_pool_index(const struct cfg *cfg, const char *name)
{
    if (!cfg || !name)
        return -1;
    for (int i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
            return i;
    return -1;
}
