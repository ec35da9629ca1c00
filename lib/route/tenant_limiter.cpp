#include "route/tenant_limiter.h"

namespace kindling::route {

std::shared_ptr<TenantLimiter::Slot> TenantLimiter::try_acquire(const std::string& tenant) {
    {
        std::lock_guard lk(mu_);
        size_t& n = running_[tenant];
        if (limit_ && n >= limit_) {
            if (n == 0) running_.erase(tenant);
            return nullptr;
        }
        ++n;
    }
    return std::make_shared<Slot>(*this, tenant);
}

size_t TenantLimiter::running(const std::string& tenant) {
    std::lock_guard lk(mu_);
    auto it = running_.find(tenant);
    return it == running_.end() ? 0 : it->second;
}

void TenantLimiter::release(const std::string& tenant) {
    std::lock_guard lk(mu_);
    auto it = running_.find(tenant);
    if (it != running_.end() && --it->second == 0) running_.erase(it);
}

}  // namespace kindling::route
