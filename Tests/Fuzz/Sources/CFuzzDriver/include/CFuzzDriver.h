#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H

/// Runs libFuzzer's driver on the harness's LLVMFuzzerTestOneInput. SwiftPM renames an executable
/// target's entry point to <Module>_main and links `main` to it; the harnesses define that function
/// and call this, so libFuzzer's command line works as with its own main.
int framerelay_fuzz_driver(int argc, char **argv);

#endif
