package dev.faultline.cli;

import dev.faultline.sys.ErrnoException;
import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The faultline command line. */
@Command(name = "faultline", mixinStandardHelpOptions = true, version = "faultline 0.1.0",
        description = {
                "Userspace memory-fault handling for virtual machines: a KVM backend over /dev/kvm,",
                "a reference hypervisor in pure Java, and the VMM that resolves memory faults.",
                "",
                "Sizes take K/M/G suffixes (64M, 1G); addresses take 0x-hex. Commands that report",
                "figures accept --json and then print one JSON object on stdout."},
        subcommands = {DemoCommand.class, MigrateCommand.class, CapsCommand.class, RunCommand.class, ScenarioCommand.class, ConformCommand.class, BenchCommand.class, SnapshotCommand.class, RestoreCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs the CLI and returns the process exit code (0 ok, 1 guest failure, 2 user error). */
    public static int execute(String... args) {
        CommandLine cl = commandLine();
        return cl.execute(args);
    }

    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            if (ex instanceof UserError || ex instanceof IllegalArgumentException) {
                err.println("faultline " + cmd.getCommandName() + ": " + ex.getMessage());
                err.flush();
                return 2;
            }
            if (ex instanceof ErrnoException) {
                err.println("faultline " + cmd.getCommandName() + ": " + ex.getMessage());
                err.flush();
                return 3;
            }
            // Not the user's mistake: one line, and the stack trace on request.
            err.println("faultline " + cmd.getCommandName() + ": internal error: " + ex
                    + (System.getenv("FAULTLINE_DEBUG") == null ? " (set FAULTLINE_DEBUG=1 for the stack trace)" : ""));
            if (System.getenv("FAULTLINE_DEBUG") != null) ex.printStackTrace(err);
            err.flush();
            return 70;
        });
        cl.setParameterExceptionHandler((ex, args) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            err.println("faultline " + ex.getCommandLine().getCommandName() + ": " + ex.getMessage());
            err.println("Try 'faultline " + ex.getCommandLine().getCommandName() + " --help' for the options.");
            err.flush();
            return 2;
        });
        return cl;
    }
}
