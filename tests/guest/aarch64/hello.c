/* Hello world: argv, environment, exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    printf("hello, world\n");
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *v = getenv("PYQEMU_TEST_VAR");
    printf("env=%s\n", v ? v : "(unset)");
    return argc > 1 ? atoi(argv[argc - 1]) & 0xff : 0;
}
