/*
 * cfg_syntax.c - one pass over a refused file, collecting the first sign of
 * each common mistake, then a choice among those at or before the line
 * where libconfig gave up (libconfig stops at the first error, so the
 * mistake cannot be after it).
 *
 * The pass knows libconfig's lexical rules (strings with escapes, #, // and
 * block comments, @include lines) and keeps a stack of open brackets with
 * the indentation of the line each was opened on. Indentation is a hint
 * only: a setting that starts a line at or left of its group's opening line
 * is "suspect" (the group probably ended before it), and a suspect becomes a
 * finding when the bracket that closes the group is indented unlike the
 * line that opened it, or is never closed at all.
 */
#include "config/cfg_syntax.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define SYN_DEPTH 64 /* deeper nesting is not analysed */
#define SYN_TOKEN 48 /* an unquoted value quoted back in a hint, at most */

struct syn_open {
    char c;      /* '{', '(' or '[' */
    int line;    /* where it was opened */
    int indent;  /* of that line's first token */
    int suspect; /* first setting inside that seems to lie outside; 0 none */
};

/* The first sign of each mistake; line 0 when none was seen. */
struct syn_found {
    int string_line; /* a string that runs past the end of its line starts here */
    int unquoted_line;
    char unquoted[SYN_TOKEN + 4]; /* the value as written */
    char unquoted_key[SYN_TOKEN + 4];
    int novalue_line;
    char novalue_key[SYN_TOKEN + 4];
    int semi_line;   /* a ';' directly inside a list */
    int comma_line;  /* an element right after another, no ',' between */
    int strong_line; /* a suspect confirmed by a closer indented unlike its opener */
    struct syn_open strong_open;
    int mismatch_line; /* a closer that does not match the open bracket */
    char mismatch_close;
    struct syn_open mismatch_open; /* .c == 0: nothing was open */
    struct syn_open unclosed;      /* innermost bracket open at the end; .c == 0 none */
    int last_line;                 /* of the last token */
};

struct syn {
    const char *p;
    int line;
    bool line_start; /* no token yet on this line */
    int indent;      /* of the current line's first token */
    struct syn_open stack[SYN_DEPTH];
    int depth;
    char prev; /* the kind of the previous token: 'v' value end, 'o' opener, ',' ';' '=' 'n' name */
    struct syn_found f;
};

static char closer_of(char open)
{
    return open == '{' ? '}' : open == '(' ? ')' : ']';
}

static void copy_token(char *out, const char *s, size_t n)
{
    if (n > SYN_TOKEN) {
        memcpy(out, s, SYN_TOKEN);
        memcpy(out + SYN_TOKEN, "...", 4);
    } else {
        memcpy(out, s, n);
        out[n] = '\0';
    }
}

/* Past blanks and comments within the current line (a block comment may span lines). */
static void skip_blanks(struct syn *s)
{
    for (;;) {
        const char *p = s->p;

        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') {
            s->p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            s->p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            for (s->p += 2; *s->p && !(s->p[0] == '*' && s->p[1] == '/'); s->p++)
                if (*s->p == '\n')
                    s->line++;
            if (*s->p)
                s->p += 2;
        } else {
            return;
        }
    }
}

/* Is [S, S+N) a scalar libconfig reads without quotes: a number or a boolean? */
static bool is_scalar(const char *s, size_t n)
{
    size_t i = 0;
    bool digits = false;

    if ((n == 4 && strncasecmp(s, "true", 4) == 0) || (n == 5 && strncasecmp(s, "false", 5) == 0))
        return true;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    if (i + 1 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        for (i += 2; i < n && isxdigit((unsigned char)s[i]); i++)
            digits = true;
        if (i < n && s[i] == 'L')
            i++;
        return digits && i == n;
    }
    for (; i < n && isdigit((unsigned char)s[i]); i++)
        digits = true;
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            digits = true;
    if (digits && i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        if (i == n || !isdigit((unsigned char)s[i]))
            return false;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (digits && i < n && s[i] == 'L')
        i++;
    return digits && i == n;
}

/* After "KEY =" (or ':'): what starts the value, and is it one libconfig takes? */
static void check_value(struct syn *s, const char *key, size_t keylen)
{
    const char *p = s->p;
    size_t n;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"' || *p == '{' || *p == '(' || (*p == '[' && p[1] != ':') || *p == '/' || *p == '#')
        return;
    if (*p == ';' || *p == ',' || *p == '\n' || *p == '\r' || *p == '}' || *p == ')' || !*p) {
        if (!s->f.novalue_line) {
            s->f.novalue_line = s->line;
            copy_token(s->f.novalue_key, key, keylen);
        }
        return;
    }
    n = strcspn(p, ";,}) \t\r\n#");
    if (n == 0 || is_scalar(p, n) || s->f.unquoted_line)
        return;
    s->f.unquoted_line = s->line;
    copy_token(s->f.unquoted, p, n);
    copy_token(s->f.unquoted_key, key, keylen);
}

/* A setting's name starts this line: does it lie outside the group it is in? */
static void check_setting_place(struct syn *s)
{
    struct syn_open *top;

    if (s->depth == 0 || s->depth > SYN_DEPTH)
        return;
    top = &s->stack[s->depth - 1];
    if (top->suspect || top->line == s->line)
        return;
    if (top->c != '{' || s->indent <= top->indent)
        top->suspect = s->line;
}

static void open_bracket(struct syn *s, char c)
{
    if (s->depth < SYN_DEPTH) {
        struct syn_open *o = &s->stack[s->depth];

        o->c = c;
        o->line = s->line;
        o->indent = s->indent;
        o->suspect = 0;
    }
    s->depth++;
}

/* Returns false at a mismatch: what follows cannot be read reliably. */
static bool close_bracket(struct syn *s, char c, bool first_on_line)
{
    struct syn_open *top;

    if (s->depth == 0) {
        s->f.mismatch_line = s->line;
        s->f.mismatch_close = c;
        return false;
    }
    s->depth--;
    if (s->depth >= SYN_DEPTH)
        return true;
    top = &s->stack[s->depth];
    if (closer_of(top->c) != c) {
        s->f.mismatch_line = s->line;
        s->f.mismatch_close = c;
        s->f.mismatch_open = *top;
        return false;
    }
    if (first_on_line && s->indent != top->indent && top->suspect && !s->f.strong_line) {
        s->f.strong_line = top->suspect;
        s->f.strong_open = *top;
    }
    return true;
}

/* A list element begins (a group, list, array or number). */
static void element_start(struct syn *s)
{
    if (s->depth == 0 || s->depth > SYN_DEPTH)
        return;
    if (s->stack[s->depth - 1].c != '{' && s->prev == 'v' && !s->f.comma_line)
        s->f.comma_line = s->line;
}

static void scan(struct syn *s)
{
    while (*s->p) {
        skip_blanks(s);
        char c = *s->p;
        bool first = s->line_start;

        if (!c)
            break;
        if (c == '\n') {
            s->line++;
            s->line_start = true;
            s->p++;
            s->indent = 0;
            const char *q = s->p;
            while (*q == ' ' || *q == '\t')
                q++;
            s->indent = (int)(q - s->p);
            continue;
        }
        s->line_start = false;
        s->f.last_line = s->line;
        if (c == '@' && first) { /* @include "file": a directive, not a value */
            s->p += strcspn(s->p, "\n");
            continue;
        }
        if (c == '"') {
            int start = s->line;

            for (s->p++; *s->p && *s->p != '"'; s->p++) {
                if (*s->p == '\\' && s->p[1])
                    s->p++;
                else if (*s->p == '\n')
                    s->line++;
            }
            if (s->line != start && !s->f.string_line)
                s->f.string_line = start;
            if (*s->p)
                s->p++;
            s->prev = 'v';
        } else if (c == '{' || c == '(' || c == '[') {
            element_start(s);
            open_bracket(s, c);
            s->p++;
            s->prev = 'o';
        } else if (c == '}' || c == ')' || c == ']') {
            s->p++;
            if (!close_bracket(s, c, first))
                return;
            s->prev = 'v';
        } else if (c == ';' || c == ',') {
            if (c == ';' && s->depth > 0 && s->depth <= SYN_DEPTH &&
                s->stack[s->depth - 1].c != '{' && !s->f.semi_line)
                s->f.semi_line = s->line;
            s->p++;
            s->prev = c;
        } else if (isalpha((unsigned char)c) || c == '*' || c == '_') {
            const char *w = s->p;
            size_t n = strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789-_*");
            const char *q = w + n;

            while (*q == ' ' || *q == '\t')
                q++;
            s->p = w + n;
            if (*q == '=' || *q == ':') {
                if (first)
                    check_setting_place(s);
                s->p = q + 1;
                check_value(s, w, n);
                s->prev = '=';
            } else {
                s->prev = 'v'; /* true, false, or a stray word */
            }
        } else if (isdigit((unsigned char)c) || c == '-' || c == '+' || c == '.') {
            element_start(s);
            s->p += 1 + strspn(s->p + 1, "0123456789abcdefABCDEFxXLl.+-");
            s->prev = 'v';
        } else {
            s->p++;
            s->prev = c;
        }
    }
    if (s->depth > 0 && s->depth <= SYN_DEPTH)
        s->f.unclosed = s->stack[s->depth - 1];
}

enum syn_kind {
    SYN_NONE,
    SYN_STRING,
    SYN_UNQUOTED,
    SYN_NOVALUE,
    SYN_STRONG,
    SYN_MISMATCH,
    SYN_UNCLOSED,
    SYN_SEMI,
    SYN_COMMA
};

struct syn_pick {
    int line;
    enum syn_kind kind;
};

/* The earliest finding at or before LINE wins; on one line, the first considered. */
static void consider(struct syn_pick *best, int at, int line, enum syn_kind kind)
{
    if (at > 0 && at <= line && (best->line == 0 || at < best->line)) {
        best->line = at;
        best->kind = kind;
    }
}

static void missing_closer(struct cfg_syntax_hint *hint, const struct syn_open *o)
{
    snprintf(hint->text, sizeof(hint->text),
             "'%c' missing before this line: the '%c' of line %d is not closed", closer_of(o->c),
             o->c, o->line);
}

bool cfg_syntax_explain(const char *text, int line, struct cfg_syntax_hint *hint)
{
    struct syn s;
    const struct syn_found *f = &s.f;
    struct syn_pick best = {0, SYN_NONE};
    int unclosed_at = 0, mismatch_at = 0;

    memset(&s, 0, sizeof(s));
    s.p = text;
    s.line = 1;
    s.line_start = true;
    s.indent = (int)strspn(text, " \t");
    scan(&s);
    /* a bracket left open is the answer when libconfig ran into the end of
     * the file, or when a setting inside it already looked out of place */
    if (f->unclosed.c && (f->unclosed.suspect || line >= f->last_line))
        unclosed_at = f->unclosed.suspect ? f->unclosed.suspect : f->unclosed.line;
    if (f->mismatch_line == line)
        mismatch_at = f->mismatch_open.suspect ? f->mismatch_open.suspect : line;

    /* a string that runs on swallows what follows: brackets after it mean nothing */
    consider(&best, f->string_line, line, SYN_STRING);
    if (best.kind != SYN_STRING) {
        consider(&best, f->unquoted_line, line, SYN_UNQUOTED);
        consider(&best, f->novalue_line, line, SYN_NOVALUE);
        consider(&best, f->strong_line, line, SYN_STRONG);
        consider(&best, mismatch_at, line, SYN_MISMATCH);
        consider(&best, unclosed_at, line, SYN_UNCLOSED);
        consider(&best, f->semi_line, line, SYN_SEMI);
        consider(&best, f->comma_line, line, SYN_COMMA);
    }
    hint->line = best.line;
    switch (best.kind) {
    case SYN_NONE:
        return false;
    case SYN_STRING:
        snprintf(hint->text, sizeof(hint->text),
                 "the string opened on this line runs past its end: is its closing '\"' missing?");
        break;
    case SYN_UNQUOTED: {
        const char *v = f->unquoted;
        int n = (int)strlen(v);

        if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') { /* 'single quotes' */
            v++;
            n -= 2;
        }
        snprintf(hint->text, sizeof(hint->text), "%s needs double quotes: %s = \"%.*s\"",
                 f->unquoted, f->unquoted_key, n, v);
        break;
    }
    case SYN_NOVALUE:
        snprintf(hint->text, sizeof(hint->text), "%s has no value", f->novalue_key);
        break;
    case SYN_STRONG:
        missing_closer(hint, &f->strong_open);
        break;
    case SYN_MISMATCH:
        if (!f->mismatch_open.c)
            snprintf(hint->text, sizeof(hint->text), "'%c' closes nothing that is open",
                     f->mismatch_close);
        else if (best.line == f->mismatch_open.suspect)
            missing_closer(hint, &f->mismatch_open);
        else
            snprintf(hint->text, sizeof(hint->text),
                     "'%c' missing before this '%c': the '%c' of line %d is not closed",
                     closer_of(f->mismatch_open.c), f->mismatch_close, f->mismatch_open.c,
                     f->mismatch_open.line);
        break;
    case SYN_UNCLOSED:
        if (f->unclosed.suspect)
            missing_closer(hint, &f->unclosed);
        else
            snprintf(hint->text, sizeof(hint->text), "this '%c' is never closed with '%c'",
                     f->unclosed.c, closer_of(f->unclosed.c));
        break;
    case SYN_SEMI:
        snprintf(hint->text, sizeof(hint->text),
                 "elements of a list are separated by ',', not ';'");
        break;
    case SYN_COMMA:
        snprintf(hint->text, sizeof(hint->text), "',' missing between two elements of a list");
        break;
    }
    return true;
}
