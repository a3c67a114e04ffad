import ArgumentParser

@main
struct RelayClientCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-client",
    abstract: "Captures a camera (RTSP, file, test pattern) and streams it to relay-server.",
    subcommands: [Publish.self],
    defaultSubcommand: Publish.self)
}
