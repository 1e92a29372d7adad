/* The initial stack as the loader built it: argc/argv/envp and the auxv types in
 * order, with the values that do not depend on where things were placed. */
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

extern char **environ;

int main(int argc, char **argv)
{
    char **e = environ;
    int nenv = 0;
    while (*e) {
        e++;
        nenv++;
    }
    printf("argc=%d argv0=%s last=%s nenv=%d\n", argc, argv[0], argv[argc - 1], nenv);
    for (Elf64_auxv_t *a = (Elf64_auxv_t *)(e + 1); a->a_type != AT_NULL; a++) {
        switch (a->a_type) {
        case AT_PHENT: case AT_PHNUM: case AT_PAGESZ: case AT_FLAGS: case AT_ENTRY:
        case AT_CLKTCK: case AT_SECURE: case AT_PHDR:
            printf("type %lu = %#lx\n", a->a_type, a->a_un.a_val);
            break;
        case AT_PLATFORM: case AT_EXECFN:
            printf("type %lu = '%s'\n", a->a_type, (char *)a->a_un.a_val);
            break;
        case AT_RANDOM:
            printf("type %lu = (random, aligned8=%d)\n", a->a_type, (a->a_un.a_val & 7) == 0);
            break;
        default:
            printf("type %lu\n", a->a_type);
        }
    }
    printf("sp aligned=%d\n", ((unsigned long)__builtin_frame_address(0) & 15) == 0);
    printf("getauxval(AT_PAGESZ)=%lu\n", getauxval(AT_PAGESZ));
    return 0;
}
