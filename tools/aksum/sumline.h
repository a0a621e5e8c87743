/* sumline.h: one line of a checksum list in sha256sum's formats (and its
 * family's: md5sum, sha1sum, sha512sum, b2sum...), split as coreutils 9.1
 * splits it. One parser for the two programs that read such lists: aksum -c
 * (check.c) and akget --checksums (tools/akget/checksum_list.c). It knows
 * nothing of either program: the algorithm is described by its --tag word
 * and digest length only. */
#ifndef AKS_SUMLINE_H
#define AKS_SUMLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* How the untagged lines of one list are split, fixed by its first such
 * line as sha256sum fixes it: "HEX  name" / "HEX *name" (GNU), or
 * "HEX name" (BSD reversed: everything after the one blank is the name). */
typedef enum aks_sumline_form {
  AKS_SUMLINE_UNKNOWN,
  AKS_SUMLINE_GNU,
  AKS_SUMLINE_BSD,
} aks_sumline_form;

typedef struct aks_sumline_algo {
  const char *tag;   /* the --tag form's word: "SHA256", "MD5", "BLAKE2b" */
  size_t digest_len; /* bytes (BLAKE2b: the default, 64) */
  bool any_len;      /* BLAKE2b: a line may give any even length (b2sum -l) */
} aks_sumline_algo;

/* Splits one line (its line end already cut; NUL-terminated, len bytes)
 * into the digest's hex and the name, both pointing into line, which is
 * changed (terminators, unescaping). Takes leading blanks, the backslash of
 * an escaped name, the --tag form "TAG (name) = HEX", and the untagged
 * forms (*form fixed by the first). *dlen: the digest's bytes. False: not a
 * checksum line of algo. */
bool aks_sumline_parse(char *line, size_t len, const aks_sumline_algo *algo,
                       aks_sumline_form *form, size_t *dlen, char **hex, char **name);

/* For a list whose algorithm is not given: which of the n algorithms the
 * line is for, by its --tag word, else by the count of hex digits that
 * start it (the first algorithm with that digest length). -1: none. */
int aks_sumline_pick(const char *line, const aks_sumline_algo *algos, size_t n);

/* A list read line by line as sha256sum reads it. Zero it to start; free
 * line when done. */
typedef struct aks_sumline_reader {
  char *line;    /* the current line, NUL-terminated, its line end cut */
  size_t len;    /* its bytes (more than strlen(line): it holds a NUL) */
  size_t cap;    /* line's allocation (getline's) */
  size_t lineno; /* its number in the list, from 1 */
} aks_sumline_reader;

/* The next line to judge, in sha256sum's order: a '#' first on the line
 * makes a comment (before any blank is skipped); then the newline and one
 * carriage return go; then an empty line is skipped. False at the end of
 * the list or on a read error (ferror(fp) tells which). */
bool aks_sumline_next(FILE *fp, aks_sumline_reader *r);

#endif /* AKS_SUMLINE_H */
