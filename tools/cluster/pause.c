/* pause: the sandbox process of every pod of the test cluster (tools/cluster). It holds the
 * pod's namespaces, reaps zombies when the pod shares its process namespace, and exits on
 * SIGINT/SIGTERM. Built static (gcc -static) into the FROM-scratch image
 * localhost/storefleet/pause:dev, which containerd is configured to use as sandbox image. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
