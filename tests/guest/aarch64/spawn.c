/* system(), popen() and posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK on a new stack). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
extern char **environ;
int main(void){
  fflush(stdout);
  int r = system("echo via system; exit 4");
  printf("system=%d\n", WEXITSTATUS(r));
  FILE *f = popen("echo via popen", "r"); char b[64]={0}; fgets(b,64,f); printf("popen got %s", b); printf("pclose=%d\n", pclose(f));
  pid_t pid; char *av[]={"sh","-c","exit 9",NULL};
  int e = posix_spawn(&pid, "/bin/sh", NULL, NULL, av, environ); int st; waitpid(pid,&st,0);
  printf("spawn=%d status=%d\n", e, WEXITSTATUS(st));
  e = posix_spawn(&pid, "/nonexistent", NULL, NULL, av, environ);
  printf("spawn missing=%d\n", e);
  return 0;}
