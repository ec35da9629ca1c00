// routerd's per-tenant concurrency limit (Lambda's account concurrency): at most
// `limit` invocations of one tenant (account) run at once, whatever their functions'
// own limits, so that one tenant cannot take every sandbox and worker.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kindling::route {

class TenantLimiter {
public:
    // One running invocation of a tenant; the count drops when the last copy goes.
    class Slot {
    public:
        Slot(TenantLimiter& l, std::string tenant) : limiter_(l), tenant_(std::move(tenant)) {}
        ~Slot() { limiter_.release(tenant_); }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;

    private:
        TenantLimiter& limiter_;
        std::string tenant_;
    };

    // 0: no limit.
    explicit TenantLimiter(size_t limit) : limit_(limit) {}

    // A slot for one more invocation of `tenant`, or null when `limit` run already.
    // The limiter must outlive its slots.  Thread-safe.
    std::shared_ptr<Slot> try_acquire(const std::string& tenant);
    size_t running(const std::string& tenant);
    size_t limit() const { return limit_; }

private:
    void release(const std::string& tenant);

    const size_t limit_;
    std::mutex mu_;
    std::unordered_map<std::string, size_t> running_;
};

}  // namespace kindling::route
