import Metrics
import Synchronization

/// Annotation counts since start: swift-metrics counters for /metrics, and the forwarder's figures
/// for the web page.
public final class AnnotationMetrics: Sendable {
  private let storedCounter = Counter(label: "framerelay_annotations_stored_total")
  private let storeFailuresCounter = Counter(label: "framerelay_annotations_store_failures_total")
  private let forwardedCounter = Counter(label: "framerelay_annotations_forwarded_total")
  private let forwardFailuresCounter = Counter(label: "framerelay_annotations_forward_failures_total")
  private let batchesCounter = Counter(label: "framerelay_annotations_batches_total")
  public let forwarded = Atomic<Int>(0)
  public let forwardFailures = Atomic<Int>(0)

  public init() {}

  public func recordStored() { storedCounter.increment() }
  public func recordStoreFailure() { storeFailuresCounter.increment() }

  /// One batch sent upstream, `confirmed` of its annotations confirmed.
  func recordBatch(confirmed: Int) {
    batchesCounter.increment()
    forwardedCounter.increment(by: confirmed)
    forwarded.add(confirmed, ordering: .relaxed)
  }

  func recordForwardFailure() {
    forwardFailuresCounter.increment()
    forwardFailures.add(1, ordering: .relaxed)
  }
}
