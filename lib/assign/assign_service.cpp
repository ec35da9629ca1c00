#include "assign/assign_service.h"

#include "assign/assign_http.h"
#include "assign/journal.h"
#include "base/log.h"
#include "http/http_server.h"

namespace kindling {

AssignService::AssignService(AssignOptions options, std::unique_ptr<Journal> journal, const Clock& clock)
    : journal_(std::move(journal)) {
    std::string socket = options.socket;
    auto launcher = std::make_unique<FcLauncher>(options.fc_launch, options.run_dir, options.jail);
    assigner_ = std::make_unique<Assigner>(std::move(options), *journal_, std::move(launcher), clock);
    api_ = std::make_unique<AssignHttpApi>(*assigner_, *journal_);
    HttpServerOptions so;
    so.label = "assignd API socket";
    so.server_name = "assignd";
    so.error_formatter = &AssignHttpApi::server_error;
    AssignHttpApi* api = api_.get();
    server_ = std::make_unique<HttpServer>(
        "unix:" + socket,
        HttpAsyncHandler([api](const HttpRequest& req, HttpResponder r) { api->handle(req, std::move(r)); }), so);
}

AssignService::~AssignService() {
    try {
        stop();
    } catch (const std::exception& e) {
        log_error("%s", e.what());
    }
}

void AssignService::start() {
    assigner_->start();
    server_->start();
}

void AssignService::stop() {
    if (!server_) return;
    server_->stop();
    assigner_->stop();
    journal_->close();
    server_.reset();
}

std::string AssignService::address() const { return server_ ? server_->address() : ""; }

}  // namespace kindling
