/*
 * cfg_syntax.h - saying where a libconfig syntax error is, and why.
 *
 * libconfig reports the line where its parser gave up, which for a missing
 * closing brace is the end of the file, and says only "syntax error". This
 * re-reads the text and, for the mistakes people make most often, names the
 * line where the mistake is and what it probably is: a text value without
 * quotes (an address such as 127.0.0.1:8080), a missing "," between the
 * elements of a list or a ";" in its place, a missing "}" or ")" (found by
 * the indentation that the rest of the file keeps), a string whose closing
 * quote is missing. When none of these fits, it says nothing and libconfig's
 * line stands.
 */
#ifndef LB_CFG_SYNTAX_H
#define LB_CFG_SYNTAX_H

#include <stdbool.h>

struct cfg_syntax_hint {
    int line;       /* where the mistake is */
    char text[256]; /* what it probably is, e.g. "a text value needs double quotes: ..." */
};

/*
 * TEXT is a whole file that libconfig refused with an error at LINE.
 * Returns true and fills HINT when one of the common mistakes explains it.
 */
bool cfg_syntax_explain(const char *text, int line, struct cfg_syntax_hint *hint);

#endif
