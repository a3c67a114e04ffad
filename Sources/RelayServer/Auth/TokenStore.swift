import Foundation
import Logging
import RelayCore
import ServiceLifecycle
import UnixSignals

/// The `--tokens` file as currently loaded. A reload that finds problems reports each with its line
/// number and keeps the rules it had.
public final class TokenStore: Sendable {
  public let path: String
  private let state: Locked<(file: TokenFile, modified: Date?)>

  /// Loads the file now: a missing file or a bad line stops the server before it listens.
  public init(path: String) throws(TokenFileError) {
    self.path = path
    let (text, modified) = try Self.read(path)
    switch TokenFile.parse(text) {
    case .success(let file): state = Locked((file, modified))
    case .failure(let problems): throw .problems(path: path, problems.all)
    }
  }

  public var current: TokenFile { state.withLock { $0.file } }

  /// Re-reads the file when its modification time moved (or always, for SIGHUP).
  func reload(force: Bool, logger: Logger) {
    let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate]) as? Date
    if !force && modified == state.withLock({ $0.modified }) { return }
    do {
      let (text, modified) = try Self.read(path)
      switch TokenFile.parse(text) {
      case .success(let file):
        state.withLock { $0 = (file, modified) }
        logger.notice("tokens reloaded", metadata: [
          "file": "\(path)", "tokens": "\(file.tokenCount)", "certificates": "\(file.certificateCount)",
        ])
      case .failure(let problems):
        state.withLock { $0.modified = modified }  // reported once per change, not every second
        for problem in problems.all {
          logger.error("--tokens \(path) \(problem); keeping the rules loaded before")
        }
      }
    } catch {
      logger.error("\(error); keeping the rules loaded before")
    }
  }

  private static func read(_ path: String) throws(TokenFileError) -> (String, Date?) {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
      throw .unreadable(path: path)
    }
    let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate]) as? Date
    return (text, modified)
  }
}

public enum TokenFileError: Error, CustomStringConvertible {
  case unreadable(path: String)
  case problems(path: String, [TokenFile.Problem])

  public var description: String {
    switch self {
    case .unreadable(let path): return "cannot read --tokens \(path) (missing, unreadable or not UTF-8)"
    case .problems(let path, let problems):
      return problems.map { "--tokens \(path) \($0)" }.joined(separator: "\n")
    }
  }
}

/// Reloads the token file when it changes (checked every second) and on SIGHUP.
struct TokenFileWatcher: Service {
  let store: TokenStore
  let logger: Logger

  func run() async throws {
    let hangups = await UnixSignalsSequence(trapping: .sighup)
    await cancelWhenGracefulShutdown {
      await withDiscardingTaskGroup { group in
        group.addTask {
          for await _ in hangups { store.reload(force: true, logger: logger) }
        }
        group.addTask {
          while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            store.reload(force: false, logger: logger)
          }
        }
      }
    }
  }
}
