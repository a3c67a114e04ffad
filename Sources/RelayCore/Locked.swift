import Synchronization

/// A value shared between tasks or threads, behind a lock; a class so it can be captured and passed.
public final class Locked<Value: Sendable>: Sendable {
  private let mutex: Mutex<Value>

  public init(_ value: Value) { mutex = Mutex(value) }

  public func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }

  public var value: Value {
    get { mutex.withLock { $0 } }
    set { mutex.withLock { $0 = newValue } }
  }
}
