#include "route/event_queue.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <sstream>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"

namespace kindling::route {

EventQueue::EventQueue(const std::string& dir) {
    if (dir.empty()) return;
    ::mkdir(dir.c_str(), 0700);
    std::string path = dir + "/events.log";
    std::string text;
    if (::access(path.c_str(), F_OK) == 0) text = read_file(path);
    // Parse; a torn tail (killed mid-append, before the fsync returned and so before
    // any 202) is dropped.
    std::map<std::string, QueuedEvent> open;
    std::vector<std::string> order;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) break;
        std::istringstream h(text.substr(pos, nl - pos));
        std::string kind;
        h >> kind;
        if (kind == "E") {
            QueuedEvent e;
            size_t n = 0;
            if (!(h >> e.id >> e.function >> e.version >> n) || nl + 1 + n + 1 > text.size()) break;
            e.payload = text.substr(nl + 1, n);
            pos = nl + 1 + n + 1;
            order.push_back(e.id);
            open[e.id] = std::move(e);
        } else if (kind == "D") {
            std::string id;
            h >> id;
            open.erase(id);
            pos = nl + 1;
        } else {
            break;
        }
    }
    std::string rewrite;
    for (const auto& id : order) {
        auto it = open.find(id);
        if (it == open.end()) continue;
        const auto& e = it->second;
        rewrite += "E " + e.id + " " + e.function + " " + e.version + " " + std::to_string(e.payload.size()) +
                   "\n" + e.payload + "\n";
        pending_.push_back(e);
        open.erase(it);
    }
    write_file_atomic(path, rewrite, 0600);
    fd_ = open_file(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (!pending_.empty()) log_info("%s: %zu pending event invocation(s) to replay", path.c_str(), pending_.size());
}

void EventQueue::append(const QueuedEvent& e) {
    if (!fd_) return;
    std::string rec = "E " + e.id + " " + e.function + " " + e.version + " " + std::to_string(e.payload.size()) +
                      "\n" + e.payload + "\n";
    std::lock_guard lk(mu_);
    write_full(fd_.get(), rec.data(), rec.size(), "event queue");
    if (::fdatasync(fd_.get()) < 0) throw_errno("event queue: fdatasync");
}

void EventQueue::done(const std::string& id) {
    if (!fd_) return;
    std::string rec = "D " + id + "\n";
    std::lock_guard lk(mu_);
    try {
        write_full(fd_.get(), rec.data(), rec.size(), "event queue");
    } catch (const Error& e) {
        log_warn("%s", e.what());
    }
}

}  // namespace kindling::route
