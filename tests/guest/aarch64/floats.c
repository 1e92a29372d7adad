/* printf/strtod of doubles and floats (needs the FP/SIMD translator). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    double d = 3.141592653589793;
    printf("%.10f %e %g\n", d, d * 1e10, d / 7);
    float f = 1.5f;
    printf("%f %.3f\n", f * 3, (double)f / 3);
    printf("%.6f\n", strtod("2.718281828", NULL));
    double acc = 0;
    for (int i = 1; i <= 100; i++)
        acc += 1.0 / (i * (double)i);
    printf("basel=%.12f sqrt=%.9f\n", acc, sqrt(acc * 6));
    return 0;
}
