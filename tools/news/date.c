/* news: feed dates (RFC 822/2822 and RFC 3339), computed from their fields
 * (no mktime/timegm, no TZ, no locale). */
#include "feed.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (eras of 400 years, March-based years so that Feb 29 comes last). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;        /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

typedef struct fields {
    int64_t year;
    int mon, day, hour, min, sec;
    int offset; /* seconds east of UTC */
} fields;

static int to_epoch(const fields *f, int64_t *out)
{
    if (f->year < 1 || f->year > 9999 || f->mon < 1 || f->mon > 12 || f->day < 1 ||
        f->day > days_in_month(f->year, f->mon) || f->hour < 0 || f->hour > 24 ||
        f->min < 0 || f->min > 59 || f->sec < 0 || f->sec > 60 ||
        (f->hour == 24 && (f->min || f->sec)))
        return -EINVAL;
    int sec = f->sec == 60 ? 59 : f->sec; /* a leap second */
    *out = days_from_civil(f->year, f->mon, f->day) * 86400 + f->hour * 3600 +
           f->min * 60 + sec - f->offset;
    return 0;
}

static bool digit(char c) { return c >= '0' && c <= '9'; }
static bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Up to max digits at *s into *v; the count read (0: none). */
static int num(const char **s, int max, int64_t *v)
{
    int n = 0;
    *v = 0;
    while (n < max && digit(**s)) {
        *v = *v * 10 + (**s - '0');
        (*s)++;
        n++;
    }
    return n;
}

static void skip_space(const char **s)
{
    while (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n')
        (*s)++;
}

/* "+hh:mm", "+hhmm", "+hh" at *s: seconds east of UTC, or -1. */
static int numeric_zone(const char **s, int *offset)
{
    const char *p = *s;
    int sign = *p == '-' ? -1 : 1;
    if (*p != '+' && *p != '-')
        return -1;
    p++;
    int64_t h, m = 0;
    if (num(&p, 2, &h) != 2)
        return -1;
    if (*p == ':')
        p++;
    if (digit(*p) && num(&p, 2, &m) != 2)
        return -1;
    if (h > 23 || m > 59)
        return -1;
    *offset = sign * (int)(h * 3600 + m * 60);
    *s = p;
    return 0;
}

static int rfc3339(const char *s, int64_t *out)
{
    fields f = {0};
    int64_t v;
    skip_space(&s);
    if (num(&s, 4, &f.year) != 4 || *s++ != '-')
        return -EINVAL;
    if (num(&s, 2, &v) != 2)
        return -EINVAL;
    f.mon = (int)v;
    if (*s++ != '-' || num(&s, 2, &v) != 2)
        return -EINVAL;
    f.day = (int)v;
    if (*s == 'T' || *s == 't' || (*s == ' ' && digit(s[1]))) {
        s++;
        if (num(&s, 2, &v) != 2)
            return -EINVAL;
        f.hour = (int)v;
        if (*s++ != ':' || num(&s, 2, &v) != 2)
            return -EINVAL;
        f.min = (int)v;
        if (*s == ':') {
            s++;
            if (num(&s, 2, &v) != 2)
                return -EINVAL;
            f.sec = (int)v;
            if (*s == '.' || *s == ',') {
                s++;
                if (!digit(*s))
                    return -EINVAL;
                while (digit(*s))
                    s++;
            }
        }
        skip_space(&s);
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            if (numeric_zone(&s, &f.offset) != 0)
                return -EINVAL;
        } else if (strncasecmp(s, "UTC", 3) == 0 || strncasecmp(s, "GMT", 3) == 0) {
            s += 3;
        }
    }
    skip_space(&s);
    if (*s)
        return -EINVAL;
    return to_epoch(&f, out);
}

static int month_of(const char *w, size_t n)
{
    static const char *const months[12] = {
        "january", "february", "march",     "april",   "may",      "june",
        "july",    "august",   "september", "october", "november", "december",
    };
    if (n < 3)
        return 0;
    for (int i = 0; i < 12; i++) {
        /* "Dec", "December", also "Sept" */
        if (n <= strlen(months[i]) && strncasecmp(w, months[i], n) == 0)
            return i + 1;
    }
    return 0;
}

static bool day_name(const char *w, size_t n)
{
    static const char *const days[7] = {"sunday",   "monday", "tuesday", "wednesday",
                                        "thursday", "friday", "saturday"};
    if (n < 3)
        return false;
    for (int i = 0; i < 7; i++)
        if (n <= strlen(days[i]) && strncasecmp(w, days[i], n) == 0)
            return true;
    /* "Tues", "Thur", "Thurs" */
    return (n == 4 && strncasecmp(w, "tues", 4) == 0) ||
           (n >= 4 && n <= 5 && strncasecmp(w, "thurs", n) == 0);
}

/* A named zone: seconds east of UTC, or -1 when unknown. */
static int named_zone(const char *w, size_t n, int *offset)
{
    static const struct {
        const char *name;
        int hours;
    } zones[] = {
        {"UT", 0},    {"UTC", 0},   {"GMT", 0},   {"Z", 0},    {"EST", -5},
        {"EDT", -4},  {"CST", -6},  {"CDT", -5},  {"MST", -7}, {"MDT", -6},
        {"PST", -8},  {"PDT", -7},  {"AKST", -9}, {"AKDT", -8}, {"HST", -10},
        {"WET", 0},   {"WEST", 1},  {"BST", 1},   {"CET", 1},  {"CEST", 2},
        {"MET", 1},   {"MEST", 2},  {"EET", 2},   {"EEST", 3}, {"MSK", 3},
        {"JST", 9},   {"KST", 9},   {"AEST", 10}, {"AEDT", 11}, {"NZST", 12},
        {"NZDT", 13},
    };
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        if (strlen(zones[i].name) == n && strncasecmp(zones[i].name, w, n) == 0) {
            *offset = zones[i].hours * 3600;
            return 0;
        }
    }
    /* Military zones (one letter but J): their signs were given backwards
     * in RFC 822, so RFC 2822 (4.3) says to take them as UTC. */
    if (n == 1 && alpha(w[0]) && (w[0] | 0x20) != 'j') {
        *offset = 0;
        return 0;
    }
    return -1;
}

/* RFC 822/2822 and what feeds really write: "[Day,] DD Mon YYYY HH:MM[:SS]
 * [zone]", "DD-Mon-YY" (RFC 850), "Day Mon DD HH:MM:SS YYYY" (asctime),
 * the year anywhere after the month. Tokens are read in order; numbers
 * are told apart by their shape. */
static int rfc822(const char *s, int64_t *out)
{
    fields f = {0};
    bool have_day = false, have_year = false, have_time = false, have_zone = false;
    bool have_ampm = false, have_zone_name = false;
    int64_t v;
    while (*s) {
        if (*s == ' ' || *s == '\t' || *s == ',' || *s == '\r' || *s == '\n' ||
            (*s == '-' && !have_time) || (*s == '.' && !have_time)) {
            s++;
            continue;
        }
        if (alpha(*s)) {
            const char *w = s;
            while (alpha(*s))
                s++;
            size_t n = (size_t)(s - w);
            int m;
            if (!f.mon && (m = month_of(w, n)) != 0) {
                f.mon = m;
            } else if (!f.mon && !have_day && day_name(w, n)) {
                /* ignored: the day of the week is not checked */
            } else if (have_time && !have_zone && !have_ampm && n == 2 &&
                       (strncasecmp(w, "am", 2) == 0 || strncasecmp(w, "pm", 2) == 0)) {
                /* "10:40 PM" */
                if (f.hour < 1 || f.hour > 12)
                    return -EINVAL;
                f.hour = f.hour % 12 + ((w[0] | 0x20) == 'p' ? 12 : 0);
                have_ampm = true;
            } else if (have_time && !have_zone) {
                /* an unknown alphabetic zone is taken as UTC */
                if (named_zone(w, n, &f.offset) != 0)
                    f.offset = 0;
                have_zone = have_zone_name = true;
                /* "GMT+0100", "UTC-05:00" */
                if (*s == '+' || *s == '-') {
                    int off;
                    if (numeric_zone(&s, &off) == 0)
                        f.offset = off;
                }
            } else if (have_zone && !have_zone_name) {
                /* "+0000 GMT": a name after the offset (the offset counts) */
                have_zone_name = true;
            } else {
                return -EINVAL;
            }
            continue;
        }
        if (*s == '(') { /* a comment */
            while (*s && *s != ')')
                s++;
            if (*s)
                s++;
            continue;
        }
        if ((*s == '+' || *s == '-') && have_time && !have_zone) {
            if (numeric_zone(&s, &f.offset) != 0)
                return -EINVAL;
            have_zone = true;
            continue;
        }
        if (!digit(*s))
            return -EINVAL;
        const char *start = s;
        int nd = num(&s, 5, &v);
        if (*s == ':') { /* the time */
            if (have_time || nd > 2)
                return -EINVAL;
            f.hour = (int)v;
            s++;
            if (num(&s, 2, &v) != 2)
                return -EINVAL;
            f.min = (int)v;
            if (*s == ':') {
                s++;
                if (num(&s, 2, &v) != 2)
                    return -EINVAL;
                f.sec = (int)v;
                if (*s == '.') { /* fractions, rare but seen */
                    s++;
                    while (digit(*s))
                        s++;
                }
            }
            have_time = true;
            continue;
        }
        if (digit(*s))
            return -EINVAL;
        if (!have_day && !f.mon && nd <= 2) {
            f.day = (int)v;
            have_day = true;
        } else if (!have_day && f.mon && nd <= 2 && !have_year) {
            /* "Dec 6" (asctime) */
            f.day = (int)v;
            have_day = true;
        } else if (!have_year && f.mon && have_day && (nd == 2 || nd == 4 || nd == 3)) {
            if (nd == 2)
                v += v < 50 ? 2000 : 1900;
            else if (nd == 3)
                v += 1900;
            f.year = v;
            have_year = true;
        } else {
            (void)start;
            return -EINVAL;
        }
    }
    if (!have_day || !f.mon || !have_year)
        return -EINVAL;
    return to_epoch(&f, out);
}

int news_parse_date(const char *s, int64_t *out)
{
    if (!s)
        return -EINVAL;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    int64_t t;
    if (digit(s[0]) && digit(s[1]) && digit(s[2]) && digit(s[3]) && s[4] == '-') {
        if (rfc3339(s, &t) != 0)
            return -EINVAL;
    } else if (rfc822(s, &t) != 0) {
        return -EINVAL;
    }
    *out = t;
    return 0;
}

void news_format_date(int64_t t, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = 0;
    /* years 0..9999 only (also keeps the arithmetic far from overflow) */
    if (t < -62167219200LL || t > 253402300799LL)
        return;
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t rem = t - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}
