// Firecracker's REST API (firecracker/src/api_server/swagger/firecracker.yaml) mapped
// onto a VmmControl, so scripts written for Firecracker drive fc-launch unchanged:
// same paths, JSON bodies, status codes and {"fault_message": ...} errors.
//
//   GET   /                 {"id","state","vmm_version","app_name":"kindling"}
//   GET   /version          {"firecracker_version"}
//   PUT   /boot-source      {kernel_image_path, boot_args?, initrd_path?, guest_kind?}
//                           guest_kind ("nano"|"linux"|"auto") is kindling's extension
//   GET   /machine-config   200 {vcpu_count, mem_size_mib, smt, track_dirty_pages}
//   PUT   /machine-config   {vcpu_count, mem_size_mib, smt?, track_dirty_pages?}
//   PATCH /machine-config   any subset of the above, merged into the current config
//   PUT   /drives/{id}      {drive_id, path_on_host, is_root_device, is_read_only?}
//   PUT   /vsock            {guest_cid, uds_path, vsock_id?}
//   PUT   /actions          {action_type: InstanceStart|SendCtrlAltDel|FlushMetrics}
//   PATCH /vm               {state: Paused|Resumed}
//
// PUT/PATCH answer 204; bad JSON, missing/mistyped/unknown fields and any
// kindling::Error from the VmmControl answer 400; unknown paths 404; a known path
// with the wrong method 405.  The snapshot routes (PUT /snapshot/create, /load) are
// not served yet: they slot into the route table in fc_api.cpp.
#pragma once

#include <string>

#include "http/http_server.h"
#include "vmm/vm_config.h"

namespace kindling {

class FirecrackerApi {
public:
    // Firecracker's default API payload limit (--http-api-max-payload-size).
    static constexpr size_t kMaxPayloadBytes = 51200;

    // `vmm` must outlive this object and every server serving it.  `instance_id` is
    // what GET / reports as "id" (Firecracker's --id, default "anonymous-instance").
    explicit FirecrackerApi(VmmControl& vmm, std::string instance_id = "anonymous-instance");

    // Never throws: every failure becomes an error response.
    HttpResponse handle(const HttpRequest& req);

    // A handler for HttpServer; it refers to this object.
    HttpHandler handler();

    // Server options matching Firecracker: payload limit, fault_message errors,
    // "API socket" in the path-in-use error.
    static HttpServerOptions server_options();

    // {"fault_message": message} with `status`.
    static HttpResponse fault(int status, const std::string& message);

private:
    VmmControl& vmm_;
    std::string instance_id_;
};

}  // namespace kindling
