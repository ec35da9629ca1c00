// AF_UNIX helpers: connect outcomes, stale and live sockets at a listener's path.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>

#include "base/unix_socket.h"

using namespace kindling;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/kn-unix-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

}  // namespace

TEST_CASE("unix socket: connect outcomes are values or errors naming the path") {
    std::string dir = temp_dir();
    int err = 0;
    CHECK_FALSE(try_connect_unix(dir + "/none", &err).valid());
    CHECK(err == ENOENT);
    CHECK_FALSE(try_connect_unix(std::string(200, 'x'), &err).valid());
    CHECK(err == ENAMETOOLONG);
    try {
        connect_unix(dir + "/none");
        FAIL("connect_unix to a missing path succeeded");
    } catch (const SysError& e) {
        CHECK(std::string(e.what()).find(dir + "/none") != std::string::npos);
        CHECK(e.err() == ENOENT);
    }
    CHECK_THROWS_AS(unix_address(""), SysError);

    UnixListener l = listen_unix(dir + "/s", "test socket");
    UniqueFd c = connect_unix(dir + "/s");
    CHECK(c.valid());
    l.remove_path();
    struct stat st;
    CHECK(::lstat((dir + "/s").c_str(), &st) != 0);
    ::rmdir(dir.c_str());
}

TEST_CASE("unix socket: a stale socket is replaced, a live one or a file is refused") {
    std::string dir = temp_dir();
    std::string path = dir + "/s";
    {
        UnixListener first = listen_unix(path, "test socket");
        // A live listener: in use, and its socket file stays.
        try {
            listen_unix(path, "test socket");
            FAIL("a second listener took a live path");
        } catch (const AddressInUseError& e) {
            CHECK(std::string(e.what()) == path + ": test socket path in use");
        }
        CHECK(connect_unix(path).valid());
    }  // closed without removing the path: a stale socket file is left
    UnixListener second = listen_unix(path, "test socket");
    CHECK(connect_unix(path).valid());
    second.remove_path();

    std::ofstream(dir + "/file") << "data";
    CHECK_THROWS_AS(listen_unix(dir + "/file", "test socket"), SysError);
    std::ifstream in(dir + "/file");
    std::string kept;
    in >> kept;
    CHECK(kept == "data");
    ::unlink((dir + "/file").c_str());
    ::rmdir(dir.c_str());
}

TEST_CASE("unix socket: the socket file is mode 0600 whatever the umask") {
    std::string dir = temp_dir();
    mode_t old = ::umask(0);
    UnixListener l = listen_unix(dir + "/s", "test socket");
    ::umask(old);
    struct stat st {};
    REQUIRE(::stat((dir + "/s").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(::umask(old) == old);  // restored
    l.remove_path();
    ::rmdir(dir.c_str());
}
