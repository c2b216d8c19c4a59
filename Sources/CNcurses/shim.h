// A thin shim over ncursesw for Swift: wide-character API on, and accessors for what Swift
// cannot import (attribute macros, ACS characters, globals, variadic functions).
#ifndef SOTTO_CNCURSES_SHIM_H
#define SOTTO_CNCURSES_SHIM_H

#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <locale.h>
#include <stdio.h>
#include <wchar.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <ncursesw/curses.h>

int wcwidth(wchar_t c);

static inline WINDOW *sotto_stdscr(void) { return stdscr; }
static inline int sotto_lines(void) { return LINES; }
static inline int sotto_cols(void) { return COLS; }
static inline FILE *sotto_stdout(void) { return stdout; }
static inline FILE *sotto_stdin(void) { return stdin; }

static inline int sotto_a_normal(void) { return (int)A_NORMAL; }
static inline int sotto_a_bold(void) { return (int)A_BOLD; }
static inline int sotto_a_reverse(void) { return (int)A_REVERSE; }
static inline int sotto_a_underline(void) { return (int)A_UNDERLINE; }
static inline int sotto_a_dim(void) { return (int)A_DIM; }
static inline int sotto_color_pair(int n) { return (int)COLOR_PAIR(n); }

static inline int sotto_setlocale_all(void) { return setlocale(LC_ALL, "") != NULL; }
/// Makes LC_CTYPE a UTF-8 locale (from the environment, else C.UTF-8) so that wcwidth works.
static inline int sotto_utf8_ctype(void) {
  const char *cur = setlocale(LC_CTYPE, NULL);
  if (cur && (strstr(cur, "UTF-8") || strstr(cur, "utf8") || strstr(cur, "UTF8"))) return 1;
  const char *env = setlocale(LC_CTYPE, "");
  if (env && (strstr(env, "UTF-8") || strstr(env, "utf8") || strstr(env, "UTF8"))) return 1;
  return setlocale(LC_CTYPE, "C.UTF-8") != NULL;
}

/// The terminal size from the kernel (TIOCGWINSZ on stdout); 0 on success.
static inline int sotto_tty_size(int *rows, int *cols) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0) return -1;
  *rows = ws.ws_row;
  *cols = ws.ws_col;
  return 0;
}

static inline int sotto_key_code_yes(void) { return KEY_CODE_YES; }

#endif
