// server/page.h: the page that `run model -m serve` serves at GET / (server/page.html: a chat
// that streams replies from /v1/chat/completions and shows each reply's attention map).
//
// The Makefile turns server/page.html into build/serve_page.c: one string literal per line of
// the file, each ending in its newline, then NULL. Write the strings in order, as they are, to
// send the page (Content-Type: text/html; charset=utf-8); it fetches nothing else.
#ifndef SEARCHLIGHT_SERVER_PAGE_H
#define SEARCHLIGHT_SERVER_PAGE_H

extern const char *const serve_page[];

#endif
