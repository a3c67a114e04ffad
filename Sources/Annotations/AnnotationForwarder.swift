import Foundation
import Logging
import RelayCore

/// Sends the outbox upstream, oldest first, in batches bounded by size and by the age of their oldest
/// annotation. Only what the upstream confirmed is deleted; a failure is retried after an exponential,
/// jittered back-off. Delivery is at least once: upstreams deduplicate by the annotation's id.
public struct AnnotationForwarder: Sendable {
  public struct Settings: Sendable {
    public var batchSize = 100
    public var batchWait: Duration = .milliseconds(200)
    public var backoff = Backoff(initialSeconds: 0.25, maximumSeconds: 30)
    public init() {}
  }

  let outbox: AnnotationOutbox
  let upstream: any AnnotationUpstream
  /// Where annotations go, for people (the web page).
  public var upstreamDescription: String { upstream.description }
  let settings: Settings
  let metrics: AnnotationMetrics
  let logger: Logger

  public init(
    outbox: AnnotationOutbox, upstream: any AnnotationUpstream, settings: Settings, metrics: AnnotationMetrics,
    logger: Logger
  ) {
    self.outbox = outbox
    self.upstream = upstream
    self.settings = settings
    self.metrics = metrics
    self.logger = logger
  }

  /// Forwards until the task is cancelled.
  public func run() async throws {
    logger.info("forwarding annotations", metadata: ["upstream": "\(upstream.description)"])
    try await upstream.run { await forwardLoop() }
  }

  private func forwardLoop() async {
    var failures = 0
    while !Task.isCancelled {
      let batch: [OutboxEntry]
      do {
        batch = try await outbox.oldest(limit: settings.batchSize)
      } catch {
        logger.error("cannot read the annotations outbox: \(error)")
        failures += 1
        await pause(seconds: settings.backoff.delay(attempt: failures - 1))
        continue
      }
      if batch.isEmpty {
        await outbox.waitForInsertions()  // idle: nothing to poll for
        continue
      }
      if let wait = waitBeforeSending(batch) {
        await pause(seconds: wait)
        continue
      }
      let delivery = await upstream.deliver(batch)
      do {
        try await outbox.remove(delivery.confirmed)
        metrics.recordBatch(confirmed: delivery.confirmed.count)
      } catch {
        logger.error("cannot delete delivered annotations from the outbox (they will be sent again): \(error)")
      }
      guard let failure = delivery.failure else {
        if failures > 0 {
          logger.info("annotations upstream \(upstream.description) is accepting again")
        }
        failures = 0
        continue
      }
      failures += 1
      metrics.recordForwardFailure()
      let delay = settings.backoff.delay(attempt: failures - 1)
      logger.warning(
        "annotations upstream: \(failure); \(outbox.pendingCount) waiting, retrying in \(String(format: "%.2f", delay))s")
      await pause(seconds: delay)
    }
  }

  /// Seconds to wait for the batch to fill (or for anything at all), or nil to send it now.
  private func waitBeforeSending(_ batch: [OutboxEntry]) -> Double? {
    let waitMs = settings.batchWait / .milliseconds(1)
    guard let oldest = batch.first else { return nil }
    if batch.count >= settings.batchSize { return nil }
    let age = Double(WallClock.nowMs() - oldest.createdMs)
    return age >= waitMs ? nil : (waitMs - age) / 1000
  }

  private func pause(seconds: Double) async {
    try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
  }
}
