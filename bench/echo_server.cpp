// bench_echo_server: the backend pod of the issue-7 data-plane benchmark. Echoes every TCP
// byte and every UDP datagram it receives on one port, from one epoll thread, and prints
// "ready" once both sockets listen. Stops on SIGTERM/SIGINT, or by itself after --max-seconds
// so a lost harness never leaves it running.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bench_echo_server: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int listenOn(int type, uint16_t port) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  if (type == SOCK_STREAM && listen(fd, 4096) != 0) die("listen");
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  uint16_t port = 8080;
  long maxSeconds = 3600;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--port") {
      port = static_cast<uint16_t>(std::atoi(argv[i + 1]));
    } else if (k == "--max-seconds") {
      maxSeconds = std::atol(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: bench_echo_server [--port P] [--max-seconds S]\n");
      return 2;
    }
  }
  alarm(static_cast<unsigned>(maxSeconds));

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
  int tcp = listenOn(SOCK_STREAM, port);
  int udp = listenOn(SOCK_DGRAM, port);
  int one = 1;
  setsockopt(udp, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int fd : {sfd, tcp, udp}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  std::printf("ready\n");
  std::fflush(stdout);

  char buf[65536];
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == sfd) return 0;
      if (fd == tcp) {
        for (;;) {
          int c = accept4(tcp, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
      } else if (fd == udp) {
        for (;;) {
          // Answer from the address the request was sent to (the pod has several): a reply
          // from another one would not match the proxy node's conntrack entry.
          sockaddr_in from{};
          iovec iov{buf, sizeof buf};
          alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in_pktinfo))];
          msghdr msg{};
          msg.msg_name = &from;
          msg.msg_namelen = sizeof from;
          msg.msg_iov = &iov;
          msg.msg_iovlen = 1;
          msg.msg_control = control;
          msg.msg_controllen = sizeof control;
          ssize_t r = recvmsg(udp, &msg, 0);
          if (r < 0) break;
          iov.iov_len = static_cast<size_t>(r);
          for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
              auto* info = reinterpret_cast<in_pktinfo*>(CMSG_DATA(c));
              info->ipi_spec_dst = info->ipi_addr;
              info->ipi_ifindex = 0;
            }
          }
          sendmsg(udp, &msg, 0);
        }
      } else {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          close(fd);  // also removes it from the epoll set
          continue;
        }
        // Requests are small: the socket buffer takes the whole echo at once.
        if (write(fd, buf, static_cast<size_t>(r)) < 0) close(fd);
      }
    }
  }
}
