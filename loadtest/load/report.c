/*
 * report.c - the result of a run, as text for people or one JSON object.
 *
 * JSON field names are stable (scripts and tests read them):
 *   requests, duration_s, rps, connections,
 *   latency_us {p50, p90, p99, p999, max, mean, min, overflow},
 *   status {1xx, 2xx, 3xx, 4xx, 5xx}, errors {connect, reset, timeout, parse, other},
 *   backends {name: count, ...; "other" for names beyond the first 64},
 *   open_loop {rate, ramp_s, scheduled, sent, dropped, backlog_max} or null,
 *   plus url, mode, connections_max, threads, keep_alive, interrupted.
 */
#include "loadtest/load/load.h"

#include <inttypes.h>

static const struct {
    const char *name;
    double q;
} report_qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};

static double report_rps(const struct report_run *r)
{
    return r->duration_s > 0 ? (double)r->t->responses / r->duration_s : 0.0;
}

static void report_ms(FILE *f, const char *label, uint64_t us)
{
    fprintf(f, "  %s %" PRIu64 ".%03" PRIu64, label, us / 1000, us % 1000);
}

static void report_text_latency(FILE *f, const struct tally *t)
{
    static const char *const labels[] = {"p50", "p90", "p99", "p99.9"};
    double mean = hdr_mean(&t->lat);
    unsigned i;

    fprintf(f, "latency (ms)");
    for (i = 0; i < 4; i++)
        report_ms(f, labels[i], hdr_quantile(&t->lat, report_qs[i].q));
    report_ms(f, "max", t->lat.total ? t->lat.max : 0);
    fprintf(f, "  mean %.3f\n", mean / 1000.0);
    if (t->lat.overflow)
        fprintf(f, "              %" PRIu64 " above 60 s (percentiles clamped)\n", t->lat.overflow);
}

static void report_text_counts(FILE *f, const struct tally *t)
{
    unsigned i;

    fprintf(f, "status      ");
    for (i = 0; i < 5; i++)
        fprintf(f, "  %uxx %" PRIu64, i + 1, t->status[i]);
    fprintf(f, "\nerrors      ");
    for (i = 0; i < LD_E__COUNT; i++)
        fprintf(f, "  %s %" PRIu64, tally_err_name((enum ld_err)i), t->errors[i]);
    fprintf(f, "\nbackends    ");
    if (t->nbackends == 0 && t->backend_other == 0)
        fprintf(f, "  (no X-Backend header)");
    for (i = 0; i < t->nbackends; i++)
        fprintf(f, "  %s %" PRIu64, t->backends[i].name, t->backends[i].count);
    if (t->backend_other)
        fprintf(f, "  (other) %" PRIu64, t->backend_other);
    fputc('\n', f);
}

void report_text(FILE *f, const struct report_run *r)
{
    const struct ld_opts *o = r->o;
    const struct tally *t = r->t;

    fprintf(f, "lb-load %s: %s loop, %u connection%s, %u thread%s, %s%s\n", o->url,
            o->rate > 0 ? "open" : "closed", o->connections, o->connections == 1 ? "" : "s",
            o->threads, o->threads == 1 ? "" : "s",
            o->new_conn ? "new connection per request" : "keep-alive",
            r->interrupted ? " (interrupted)" : "");
    fprintf(f, "requests      %" PRIu64 " in %.3f s, %.1f req/s, %" PRIu64 " connections\n",
            t->responses, r->duration_s, report_rps(r), t->connections);
    report_text_latency(f, t);
    report_text_counts(f, t);
    if (o->rate > 0)
        fprintf(f,
                "open loop     rate %.3f/s  scheduled %" PRIu64 "  sent %" PRIu64
                "  dropped %" PRIu64 "  backlog max %" PRIu64 "\n",
                o->rate, t->scheduled, t->sent, t->dropped, t->backlog_max);
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void report_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void report_json_latency(FILE *f, const struct tally *t)
{
    unsigned i;

    fprintf(f, "\"latency_us\":{");
    for (i = 0; i < 4; i++)
        fprintf(f, "\"%s\":%" PRIu64 ",", report_qs[i].name, hdr_quantile(&t->lat, report_qs[i].q));
    fprintf(f, "\"max\":%" PRIu64 ",\"mean\":%.3f,\"min\":%" PRIu64 ",\"overflow\":%" PRIu64 "},",
            t->lat.total ? t->lat.max : 0, hdr_mean(&t->lat), t->lat.total ? t->lat.min : 0,
            t->lat.overflow);
}

static void report_json_counts(FILE *f, const struct tally *t)
{
    unsigned i;

    fprintf(f, "\"status\":{");
    for (i = 0; i < 5; i++)
        fprintf(f, "%s\"%uxx\":%" PRIu64, i ? "," : "", i + 1, t->status[i]);
    fprintf(f, "},\"errors\":{");
    for (i = 0; i < LD_E__COUNT; i++)
        fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", tally_err_name((enum ld_err)i), t->errors[i]);
    fprintf(f, "},\"backends\":{");
    for (i = 0; i < t->nbackends; i++) {
        fputs(i ? "," : "", f);
        report_json_str(f, t->backends[i].name);
        fprintf(f, ":%" PRIu64, t->backends[i].count);
    }
    if (t->backend_other)
        fprintf(f, "%s\"other\":%" PRIu64, t->nbackends ? "," : "", t->backend_other);
    fprintf(f, "},");
}

void report_json(FILE *f, const struct report_run *r)
{
    const struct ld_opts *o = r->o;
    const struct tally *t = r->t;

    fputc('{', f);
    fprintf(f, "\"url\":");
    report_json_str(f, o->url);
    fprintf(f, ",\"mode\":\"%s\",\"connections_max\":%u,\"threads\":%u,\"keep_alive\":%s,",
            o->rate > 0 ? "open" : "closed", o->connections, o->threads,
            o->new_conn ? "false" : "true");
    fprintf(
        f, "\"requests\":%" PRIu64 ",\"duration_s\":%.6f,\"rps\":%.3f,\"connections\":%" PRIu64 ",",
        t->responses, r->duration_s, report_rps(r), t->connections);
    report_json_latency(f, t);
    report_json_counts(f, t);
    if (o->rate > 0)
        fprintf(f,
                "\"open_loop\":{\"rate\":%.3f,\"ramp_s\":%.6f,\"scheduled\":%" PRIu64
                ",\"sent\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"backlog_max\":%" PRIu64 "},",
                o->rate, (double)o->ramp_ns / 1e9, t->scheduled, t->sent, t->dropped,
                t->backlog_max);
    else
        fprintf(f, "\"open_loop\":null,");
    fprintf(f, "\"interrupted\":%s}\n", r->interrupted ? "true" : "false");
}
