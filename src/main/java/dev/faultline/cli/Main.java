package dev.faultline.cli;

import dev.faultline.sys.ErrnoException;
import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The faultline command line. */
@Command(name = "faultline", mixinStandardHelpOptions = true, version = "faultline 0.1.0",
        description = {
                "Userspace memory-fault handling for virtual machines: a KVM backend over /dev/kvm,",
                "a reference hypervisor in pure Java, and the VMM that resolves memory faults.",
                "",
                "Sizes take K/M/G suffixes (64M, 1G); addresses take 0x-hex. Commands that report",
                "figures accept --json and then print one JSON object on stdout."})
public final class Main implements Runnable {
    /**
     * The commands, by name, in the order the help lists them. picocli builds a command's model (every
     * option, by reflection) when the command is added, and its classes are too old a class-file version
     * for the JDK's AOT cache: all of them together cost about 0.25 s of a cold start, one about 0.12 s.
     * So a command line that names a command gets only that one; anything else (no command, an option
     * such as --help, {@code help}, an unknown name that deserves suggestions) gets them all.
     */
    private static final Map<String, Class<?>> COMMANDS = new LinkedHashMap<>();
    private static final int USAGE_WIDTH = 120;
    static {
        COMMANDS.put("demo", DemoCommand.class);
        COMMANDS.put("migrate", MigrateCommand.class);
        COMMANDS.put("caps", CapsCommand.class);
        COMMANDS.put("run", RunCommand.class);
        COMMANDS.put("scenario", ScenarioCommand.class);
        COMMANDS.put("conform", ConformCommand.class);
        COMMANDS.put("bench", BenchCommand.class);
        COMMANDS.put("snapshot", SnapshotCommand.class);
        COMMANDS.put("restore", RestoreCommand.class);
        COMMANDS.put("serve", ServeCommand.class);
        COMMANDS.put("uffd-handler", UffdHandlerCommand.class);
        COMMANDS.put("tls", TlsCommand.class);
    }

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
        return commandLine(args.length > 0 ? args[0] : null).execute(args);
    }

    /** The command line for arguments that start with {@code first} (null: none). */
    static CommandLine commandLine(String first) {
        CommandLine cl = new CommandLine(new Main());
        Class<?> named = first == null ? null : COMMANDS.get(first);
        if (named != null) {
            cl.addSubcommand(first, named);
        } else {
            COMMANDS.forEach(cl::addSubcommand);
            cl.addSubcommand("help", CommandLine.HelpCommand.class);
        }
        cl.setUsageHelpWidth(USAGE_WIDTH); // descriptions are written in lines of up to ~110 characters
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            String name = cmd.getCommandSpec().qualifiedName(" ");
            if (ex instanceof UserError || ex instanceof IllegalArgumentException) {
                err.println(name + ": " + ex.getMessage());
                err.flush();
                return 2;
            }
            if (ex instanceof ErrnoException) {
                err.println(name + ": " + ex.getMessage());
                err.flush();
                return 3;
            }
            // Not the user's mistake: one line, and the stack trace on request.
            err.println(name + ": internal error: " + ex
                    + (System.getenv("FAULTLINE_DEBUG") == null ? " (set FAULTLINE_DEBUG=1 for the stack trace)" : ""));
            if (System.getenv("FAULTLINE_DEBUG") != null) ex.printStackTrace(err);
            err.flush();
            return 70;
        });
        cl.setParameterExceptionHandler((ex, args) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            String name = ex.getCommandLine().getCommandSpec().qualifiedName(" ");
            err.println(name + ": " + ex.getMessage());
            if (ex instanceof CommandLine.UnmatchedArgumentException u) CommandLine.UnmatchedArgumentException.printSuggestions(u, err);
            err.println("Try '" + name + " --help' for the options.");
            err.flush();
            return 2;
        });
        return cl;
    }
}
