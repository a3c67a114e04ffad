import NIOCore

/// Runs tasks on NIO's event loops instead of Swift's cooperative pool. The gRPC handlers run on it
/// (`GRPCListener`): a message that arrives on a loop resumes its handler on that same loop, and the
/// answer the handler writes reaches its channel without another hop (a Publish frame and its ack). On
/// the pool every message costs two thread wake-ups (loop → pool → loop). Work resumed from another
/// thread (a decoded picture, an outbox commit, a timer) lands on the next loop and may still hop to
/// its channel's. So handlers must never block: FFmpeg, SQLite and file work stay on threads of their own.
final class EventLoopTaskExecutor: TaskExecutor {
  private let group: any EventLoopGroup

  init(group: any EventLoopGroup) {
    self.group = group
  }

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    let executor = asUnownedTaskExecutor()
    // `any()` is the calling loop when there is one: a handler stays where its messages arrive.
    group.any().execute { job.runSynchronously(on: executor) }
  }
}
