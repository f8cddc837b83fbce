/* The UDP ceiling of bench/run_all.py: the least a receiver can do.
 *
 * Binds a UDP socket to 127.0.0.1 on an OS-chosen port (receive buffer of
 * argv[1] bytes, forced past net.core.rmem_max where the process may, as
 * spead2gpu's receiver does; UDP_GRO on where the kernel has it, as
 * spead2gpu's receiver does), prints the port, then drains the socket with
 * recvmmsg in batches of 64 into fixed 64 KiB buffers on every wake-up (the
 * kernel's copy to user space is all the work it does: no decoding, no
 * reassembly)
 * until no datagram has arrived for argv[2] milliseconds after the first, or
 * for argv[3] milliseconds before it.  Prints "PACKETS <n> BYTES <b>".
 *
 * run_all.py compiles it at run time (cc, gcc or clang) and searches the
 * highest rate at which it receives every byte the common sender sent: the
 * rate no SPEAD receiver on this machine can beat with the same sender.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define BATCH 64
#define MAX_DATAGRAM 65536

static unsigned char buffers[BATCH][MAX_DATAGRAM];

int main(int argc, char **argv)
{
    if (argc != 4)
    {
        fprintf(stderr, "usage: %s RCVBUF IDLE_MS FIRST_MS\n", argv[0]);
        return 2;
    }
    int rcvbuf = atoi(argv[1]);
    int idle_ms = atoi(argv[2]);
    int first_ms = atoi(argv[3]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
    {
        perror("socket");
        return 1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0)
        perror("SO_RCVBUF");
    int one = 1;
    (void) setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)); /* absent: one datagram per slot */
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0 || getsockname(fd, (struct sockaddr *) &addr, &len) != 0)
    {
        perror("bind");
        return 1;
    }
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    for (int i = 0; i < BATCH; i++)
    {
        iovs[i].iov_base = buffers[i];
        iovs[i].iov_len = MAX_DATAGRAM;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long packets = 0, bytes = 0;
    struct pollfd pfd = {fd, POLLIN, 0};
    for (;;)
    {
        int ready = poll(&pfd, 1, packets ? idle_ms : first_ms);
        if (ready <= 0)
            break; /* idle (or poll failed): the sender is done */
        int n;
        do
        {
            n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            for (int i = 0; i < n; i++)
                bytes += msgs[i].msg_len;
            if (n > 0)
                packets += (unsigned long long) n; /* GRO: segments, not datagrams */
        } while (n == BATCH);
    }
    printf("PACKETS %llu BYTES %llu\n", packets, bytes);
    return 0;
}
