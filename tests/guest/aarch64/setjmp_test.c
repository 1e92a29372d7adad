/* setjmp/longjmp across frames, preserving callee-saved state. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;
static int depth_reached;

static void dive(int n)
{
    volatile char pad[64];
    pad[0] = (char)n;
    depth_reached = n;
    if (n == 20)
        longjmp(env, n * 2 + pad[0]);
    dive(n + 1);
}

int main(void)
{
    volatile int local = 5;
    int r = setjmp(env);
    if (r == 0) {
        local = 9;
        dive(0);
    }
    printf("longjmp r=%d depth=%d local=%d\n", r, depth_reached, local);
    int count = 0;
    jmp_buf loop;
    volatile int i = 0;
    if (setjmp(loop) < 10) {
        count += i;
        i++;
        if (i < 10)
            longjmp(loop, i);
    }
    printf("loop count=%d\n", count);
    return 0;
}
