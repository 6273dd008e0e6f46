// A program outside the xxnet build, compiled against an INSTALLED xxnet
// (find_package or pkg-config, see run.sh): two contexts exchange one
// message over 127.0.0.1 through the C++ wrapper, and the answer comes back.
// Prints what it loaded and exits 0 on success, 1 otherwise, within 10 s.
#include <xxnet.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

int main() {
  try {
    std::printf("xxnet %s, ABI %u\n", std::string(xxnet::version()).c_str(), xxnet_abi_version());
    xxnet::Context server, client;
    const uint16_t port = server.listen("127.0.0.1");

    std::string got_request, got_reply;
    server.route(1, [&](const xxnet::Event& e) {
      got_request = std::string(e.data());
      server.send_conn(e.conn(), "pong: " + got_request, {e.lane(), 2}).check("reply");
    });
    client.route(2, [&](const xxnet::Event& e) { got_reply = std::string(e.data()); });

    client.send("127.0.0.1", port, "ping", {0, 1}).check("send");

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (got_reply.empty() && std::chrono::steady_clock::now() < deadline) {
      server.dispatch(64, 5);
      client.dispatch(64, 5);
    }
    std::printf("request \"%s\", reply \"%s\"\n", got_request.c_str(), got_reply.c_str());
    return got_request == "ping" && got_reply == "pong: ping" ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
