import CSQLite
import Foundation

/// An SQLite failure with its primary result code, so callers can tell a full disk from a read-only one.
struct SQLiteError: Error, CustomStringConvertible {
  var code: Int32
  var message: String

  var isDiskFull: Bool { code & 0xff == SQLITE_FULL }
  var description: String { "\(message) (SQLite code \(code))" }
}

/// One SQLite connection, used from one thread only (the outbox's).
final class SQLiteConnection {
  private var handle: OpaquePointer?

  init(path: String) throws(SQLiteError) {
    let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
    let code = sqlite3_open_v2(path, &handle, flags, nil)
    guard code == SQLITE_OK else {
      let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
      sqlite3_close(handle)
      handle = nil
      throw SQLiteError(code: code, message: message)
    }
    sqlite3_extended_result_codes(handle, 1)
  }

  deinit { sqlite3_close_v2(handle) }

  func execute(_ sql: String) throws(SQLiteError) {
    let code = sqlite3_exec(handle, sql, nil, nil, nil)
    guard code == SQLITE_OK else { throw error(code) }
  }

  func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
    var statement: OpaquePointer?
    let code = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
    guard code == SQLITE_OK, let statement else { throw error(code) }
    return SQLiteStatement(statement, connection: self)
  }

  /// The first column of the first row, as text (for PRAGMA answers).
  func scalarText(_ sql: String) throws(SQLiteError) -> String? {
    let statement = try prepare(sql)
    guard try statement.step() else { return nil }
    return statement.text(0)
  }

  var changes: Int { Int(sqlite3_changes(handle)) }

  func error(_ code: Int32) -> SQLiteError {
    SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)))
  }
}

final class SQLiteStatement {
  private let statement: OpaquePointer
  private unowned let connection: SQLiteConnection

  fileprivate init(_ statement: OpaquePointer, connection: SQLiteConnection) {
    self.statement = statement
    self.connection = connection
  }

  deinit { sqlite3_finalize(statement) }

  func reset() {
    sqlite3_reset(statement)
    sqlite3_clear_bindings(statement)
  }

  func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(statement, index, value) }

  func bind(_ index: Int32, _ value: String) {
    sqlite3_bind_text(statement, index, value, -1, framerelay_sqlite_transient())
  }

  func bind(_ index: Int32, _ value: Data) {
    value.withUnsafeBytes { bytes in
      _ = sqlite3_bind_blob(statement, index, bytes.baseAddress, Int32(bytes.count), framerelay_sqlite_transient())
    }
  }

  /// True while there is a row to read; false when done.
  func step() throws(SQLiteError) -> Bool {
    let code = sqlite3_step(statement)
    switch code {
    case SQLITE_ROW: return true
    case SQLITE_DONE: return false
    default: throw connection.error(code)
    }
  }

  func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

  func text(_ column: Int32) -> String? {
    sqlite3_column_text(statement, column).map { String(cString: $0) }
  }

  func data(_ column: Int32) -> Data {
    let count = Int(sqlite3_column_bytes(statement, column))
    guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return Data() }
    return Data(bytes: bytes, count: count)
  }
}
