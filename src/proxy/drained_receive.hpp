// A receive that tells Asio's reactor when it emptied the socket.
//
// Asio's own receive always tries the socket first when the next one starts (a "speculative"
// recv), and learns that the socket is empty only from a recv that fails (EAGAIN): a proxy,
// whose next read starts right after it forwarded a message and so nearly always finds nothing,
// pays one failed system call per read. This receive asks TCP, with the bytes, how many are left
// in the socket's queue (TCP_INQ: no extra system call; the kernel counts a received FIN as one
// byte left, so an end of stream is never missed); when none are, it says so to the reactor (its
// done_and_exhausted, which Asio's own receive reports only at end of file), and the reactor then
// queues the next read without trying: it runs when epoll reports new data (the socket's
// edge-triggered registration fires for every arrival after that). Without the count (a Unix
// socket) it behaves as Asio's receive.
//
// Off by default (Leg::drained_receives; PGRAIL_DRAINED_RECEIVE=1 switches it on): measured
// against Asio's receive it makes PgBouncer's number of system calls but spends the same CPU and
// loses a few percent of TPS (bench/RESULTS.md). (The hang that first kept it off, a session that
// shut its server socket kept waiting, no longer happens: 55 chaos runs and the integration suite.)
//
// It is Asio's reactor operation protocol (boost/asio/detail, Boost 1.81's epoll reactor),
// written for this one receive; completion, cancellation and the handler's memory are Asio's
// own, as in detail/reactive_socket_recv_op.hpp.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/error.hpp>

#include "upstream.hpp"

#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "drained_receive.hpp is written for Asio's epoll reactor"
#endif

namespace pgrail::proxy {

namespace drained_detail {

namespace asio_detail = boost::asio::detail;

// The socket's reactor registration: Asio keeps it in the socket's protected implementation.
struct SocketInternals : Stream {
    static auto& of(Stream& socket) { return (socket.*(&SocketInternals::impl_)).get_implementation(); }
};

template <typename Handler, typename IoExecutor>
class DrainedReceiveOp : public asio_detail::reactor_op {
public:
    BOOST_ASIO_DEFINE_HANDLER_PTR(DrainedReceiveOp);

    DrainedReceiveOp(int descriptor, boost::asio::mutable_buffer into, Handler& handler, const IoExecutor& io_ex)
        : reactor_op(boost::system::error_code(), &DrainedReceiveOp::do_perform, &DrainedReceiveOp::do_complete),
          descriptor_(descriptor),
          into_(into),
          handler_(std::move(handler)),
          work_(handler_, io_ex) {}

    static status do_perform(reactor_op* base) {
        auto* op = static_cast<DrainedReceiveOp*>(base);
        iovec into{op->into_.data(), op->into_.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        while (true) {
            msghdr message{};
            message.msg_iov = &into;
            message.msg_iovlen = 1;
            message.msg_control = control;
            message.msg_controllen = sizeof(control);
            const ssize_t received = ::recvmsg(op->descriptor_, &message, 0);
            if (received > 0) {
                op->bytes_transferred_ = static_cast<std::size_t>(received);
                return nothing_left(message) ? done_and_exhausted : done;
            }
            if (received == 0) {
                op->ec_ = boost::asio::error::eof;
                return done_and_exhausted;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
            op->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
            return done;
        }
    }

    static void do_complete(void* owner, asio_detail::operation* base, const boost::system::error_code&, std::size_t) {
        auto* op = static_cast<DrainedReceiveOp*>(base);
        ptr p = {std::addressof(op->handler_), op, op};
        asio_detail::handler_work<Handler, IoExecutor> work(std::move(op->work_));
        // The handler leaves the operation's memory before the upcall (it may own that memory).
        asio_detail::binder2<Handler, boost::system::error_code, std::size_t> handler(op->handler_, op->ec_,
                                                                                      op->bytes_transferred_);
        p.h = std::addressof(handler.handler_);
        p.reset();
        if (owner) {  // (none: the reactor is being destroyed, the handler goes without a call)
            asio_detail::fenced_block block(asio_detail::fenced_block::half);
            work.complete(handler, handler.handler_);
        }
    }

private:
    // TCP_INQ's count after the receive: zero means the queue is empty and no FIN is in it.
    static bool nothing_left(msghdr& message) {
        for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
            if (header->cmsg_level != SOL_TCP || header->cmsg_type != TCP_CM_INQ) continue;
            int left = 0;
            std::memcpy(&left, CMSG_DATA(header), sizeof(left));
            return left == 0;
        }
        return false;  // no count (not TCP, or TCP_INQ not on): the next receive tries first
    }

    int descriptor_;
    boost::asio::mutable_buffer into_;
    Handler handler_;
    asio_detail::handler_work<Handler, IoExecutor> work_;
};

// Per-operation cancellation (an awaitable operator's `||` cancels the loser): the queued
// receive completes with operation_aborted.
class CancelReceive {
public:
    CancelReceive(asio_detail::reactor* reactor, asio_detail::reactor::per_descriptor_data* data, int descriptor)
        : reactor_(reactor), data_(data), descriptor_(descriptor) {}
    void operator()(boost::asio::cancellation_type_t type) {
        using boost::asio::cancellation_type;
        if (!!(type & (cancellation_type::terminal | cancellation_type::partial | cancellation_type::total)))
            reactor_->cancel_ops_by_key(descriptor_, *data_, asio_detail::reactor::read_op, this);
    }

private:
    asio_detail::reactor* reactor_;
    asio_detail::reactor::per_descriptor_data* data_;
    int descriptor_;
};

}  // namespace drained_detail

// A leg's socket made non-blocking and, when `count_remaining` (the drained receive is in use),
// on TCP each receive told how many bytes are left (TCP_INQ). Without the count the receive still
// works, as Asio's does.
inline void prepare_for_drained_receive(Stream& socket, bool count_remaining) {
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    if (!count_remaining) return;
    const int family = socket.local_endpoint(ignored).protocol().family();
    if (ignored || (family != AF_INET && family != AF_INET6)) return;
    const int on = 1;
    (void)::setsockopt(socket.native_handle(), SOL_TCP, TCP_INQ, &on, sizeof(on));
}

// The reactor that serves `socket` (looked up once per socket: the lookup takes a lock).
inline boost::asio::detail::reactor& reactor_of(Stream& socket) {
    return boost::asio::use_service<boost::asio::detail::reactor>(
        boost::asio::query(socket.get_executor(), boost::asio::execution::context));
}

// Some bytes into `into` (at least one), or an error (eof: the peer closed), as
// socket.async_read_some would; `reactor` is reactor_of(socket).
template <typename Token>
auto async_drained_receive(Stream& socket, boost::asio::detail::reactor& reactor, boost::asio::mutable_buffer into,
                           Token&& token) {
    auto initiate = [](auto handler, Stream* target, boost::asio::detail::reactor* serving,
                       boost::asio::mutable_buffer buffer) {
        namespace asio_detail = boost::asio::detail;
        using Handler = decltype(handler);
        using IoExecutor = Stream::executor_type;
        using Op = drained_detail::DrainedReceiveOp<Handler, IoExecutor>;
        auto& implementation = drained_detail::SocketInternals::of(*target);
        const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
        p.p = new (p.v) Op(implementation.socket_, buffer, handler, target->get_executor());
        if (slot.is_connected()) {
            p.p->cancellation_key_ = &slot.template emplace<drained_detail::CancelReceive>(
                serving, &implementation.reactor_data_, implementation.socket_);
        }
        // (As Asio's own receive does: a socket not yet non-blocking is made so, or the receive
        // fails with the reason.)
        using asio_detail::socket_ops::non_blocking;
        if (buffer.size() == 0 || ((implementation.state_ & non_blocking) == 0 &&
                                   !asio_detail::socket_ops::set_internal_non_blocking(
                                       implementation.socket_, implementation.state_, true, p.p->ec_))) {
            serving->post_immediate_completion(p.p, is_continuation);
        } else {
            serving->start_op(asio_detail::reactor::read_op, implementation.socket_, implementation.reactor_data_, p.p,
                              is_continuation, true);
        }
        p.v = p.p = nullptr;
    };
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(initiate, token, &socket,
                                                                                            &reactor, into);
}

}  // namespace pgrail::proxy
