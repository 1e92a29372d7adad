/* fork() while other threads run and hold locks (malloc's, stdio's, a mutex): the child
 * has only the forking thread and must be able to allocate, print and exit. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void *churn(void *arg)
{
    (void)arg;
    while (!stop) {
        pthread_mutex_lock(&m);
        void *p = malloc(64 + (rand() & 255));
        memset(p, 1, 64);
        free(p);
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

int main(void)
{
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, churn, NULL);
    int ok = 0;
    for (int round = 0; round < 3; round++) {
        fflush(stdout);
        pthread_mutex_lock(&m); /* the child must not inherit a locked mutex it needs */
        pid_t pid = fork();
        if (pid == 0) {
            pthread_mutex_unlock(&m);
            char *s = malloc(100);
            snprintf(s, 100, "child %d alone", round);
            printf("%s\n", s);
            fflush(stdout);
            _exit(round + 10);
        }
        pthread_mutex_unlock(&m);
        int st;
        waitpid(pid, &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == round + 10;
    }
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    printf("children ok=%d\n", ok);
    return 0;
}
