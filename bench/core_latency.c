/* The round trip of one cache line between two threads pinned to two CPUs, every half second.
 *
 *   cc -O2 -pthread bench/core_latency.c -o /tmp/core_latency && /tmp/core_latency [seconds] [cpu_a]
 *       [cpu_b]
 *
 * Prints one figure in ns per half second. On a machine whose two CPUs share an L3 (a real
 * 2-core part, or a VM whose vCPUs sit on one core complex) it stays near 50-80 ns; where the
 * host has put the vCPUs on cores of different L3s it reads 300 ns or more. fastconv's plans
 * ran 1.37x slower in the second state on the 2-vCPU EPYC VMs (ARCHITECTURE.md, "How the
 * benchmarks measure"), so check it before and after a benchmark on a VM. Exit status 2 for
 * bad arguments or CPUs that cannot be pinned. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic long flag __attribute__((aligned(64)));
static _Atomic int stop, ready;
static int cpu_b;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int pin(int cpu) {
  if (cpu >= CPU_SETSIZE) return -1;
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

/* Answers every odd value with the next even one. */
static void *pong(void *arg) {
  (void)arg;
  if (pin(cpu_b) != 0) {
    atomic_store(&stop, 2);
    return NULL;
  }
  atomic_store(&ready, 1);
  while (!atomic_load(&stop)) {
    const long v = atomic_load(&flag);
    if (v & 1) atomic_store(&flag, v + 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 10.0;
  const int cpu_a = argc > 2 ? atoi(argv[2]) : 0;
  cpu_b = argc > 3 ? atoi(argv[3]) : 1;
  if (seconds <= 0 || cpu_a < 0 || cpu_b < 0 || cpu_a == cpu_b) {
    fprintf(stderr, "usage: core_latency [seconds > 0] [cpu_a] [cpu_b != cpu_a]\n");
    return 2;
  }
  if (pin(cpu_a) != 0) {
    fprintf(stderr, "core_latency: cannot run on CPU %d\n", cpu_a);
    return 2;
  }
  pthread_t t;
  if (pthread_create(&t, NULL, pong, NULL) != 0) return 2;
  while (!atomic_load(&ready) && !atomic_load(&stop)) {
  }
  const double end = now() + seconds;
  while (now() < end && atomic_load(&stop) == 0) {
    const double t0 = now();
    long trips = 0;
    while (now() - t0 < 0.5 && atomic_load(&stop) == 0) {
      for (int i = 0; i < 1000; ++i) {
        const long v = atomic_load(&flag) + 1; /* odd: the other thread's turn */
        atomic_store(&flag, v);
        while (atomic_load(&flag) == v && atomic_load(&stop) == 0) {
        }
      }
      trips += 1000;
    }
    if (trips) printf("%.0f ", (now() - t0) / trips * 1e9);
    fflush(stdout);
  }
  const int failed = atomic_load(&stop) == 2;
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  printf("\n");
  if (failed) fprintf(stderr, "core_latency: cannot run on CPU %d\n", cpu_b);
  return failed ? 2 : 0;
}
