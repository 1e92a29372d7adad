/* guest_errors_probe.c with only the holes that fill a 4K page of their own */
#define WHOLE_PAGES_ONLY
#include "guest_errors_probe.c"
