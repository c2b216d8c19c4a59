// epoll and eventfd, which Swift's Glibc module does not export (for UDPExchangeEngine), and
// getrandom (for PooledRandom).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
