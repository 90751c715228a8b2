package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The snapshot and restore commands, through Main.execute, with stdout and stderr captured. */
class SnapshotCommandTest {
    static CliCapture.Outcome run(String... args) {
        return CliCapture.run(args);
    }

    @Test
    void shouldTakeTheSameSnapshotTwiceAtTheSameExitAndRestoreItToTheOriginalEnd(@TempDir Path tmp) throws Exception {
        String[] guest = {"--workload", "phases", "--mem", "8M", "--rounds", "5", "--backend", "ref", "--at-exit", "5", "--json"};
        CliCapture.Outcome a = run(concat(new String[] {"snapshot", "--out", tmp.resolve("a").toString()}, guest));
        CliCapture.Outcome b = run(concat(new String[] {"snapshot", "--out", tmp.resolve("b").toString()}, guest));
        assertEquals(0, a.code(), a.err());
        assertEquals(0, b.code(), b.err());
        JsonNode ja = new ObjectMapper().readTree(a.out()), jb = new ObjectMapper().readTree(b.out());
        assertEquals(ja.at("/snapshot/ram_sha256_at_snapshot"), jb.at("/snapshot/ram_sha256_at_snapshot"), "an exit point is deterministic");
        assertEquals(5, ja.at("/snapshot/guest_exits/0").asInt());
        assertTrue(ja.at("/snapshot/zero_pages").asLong() > ja.at("/snapshot/stored_pages").asLong());

        CliCapture.Outcome r = run("restore", tmp.resolve("a").toString(), "--eager", "--backend", "ref", "--json");
        assertEquals(0, r.code(), r.err() + r.out());
        JsonNode jr = new ObjectMapper().readTree(r.out());
        assertTrue(jr.at("/ok").asBoolean());
        assertEquals(ja.at("/run/ram_sha256").asText(), jr.at("/comparison/ram_sha256").asText());
        assertTrue(jr.at("/comparison/ram_matches").asBoolean());
        assertTrue(jr.at("/timings/to_first_instruction_ms").asDouble() > 0);
        for (String part : new String[] {"describe_ms", "check_ms", "backend_open_ms", "vm_ms", "vcpus_ms", "paging_setup_ms"}) {
            assertTrue(jr.at("/timings/" + part).isNumber(), part + " in " + jr.at("/timings"));
        }

        CliCapture.Outcome text = run("restore", tmp.resolve("a").toString(), "--lazy", "--backend", "ref", "--repeat", "2");
        assertEquals(0, text.code(), text.err() + text.out());
        assertTrue(text.out().startsWith("ok: lazy restore") && text.out().contains("check thread: description"), text.out());
        assertFalse(text.out().contains("null"), "every figure of the text report is filled in: " + text.out());
    }

    @Test
    void shouldRefuseACorruptedSnapshotWithOneLineAndExitCode2(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("s");
        CliCapture.Outcome s = run("snapshot", "--workload", "phases", "--mem", "8M", "--backend", "ref", "--at-exit", "3", "--then", "stop", "--out", dir.toString());
        assertEquals(0, s.code(), s.err());
        assertTrue(s.out().contains("stopped after the snapshot"), s.out());
        Path json = dir.resolve("snapshot.json");
        Files.writeString(json, Files.readString(json).replace("\"version\" : 2,", "\"version\" : 7,"));
        CliCapture.Outcome r = run("restore", dir.toString(), "--eager", "--backend", "ref");
        assertEquals(2, r.code());
        assertEquals("", r.out());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("faultline restore: ") && r.err().contains("format version 7 is not supported"), r.err());
    }

    @Test
    void shouldRefuseASnapshotPointTheGuestNeverReaches(@TempDir Path tmp) {
        CliCapture.Outcome s = run("snapshot", "--workload", "seq-write", "--mem", "8M", "--backend", "ref", "--at-exit", "5", "--out", tmp.resolve("x").toString());
        assertEquals(2, s.code());
        assertTrue(s.err().contains("never reached its snapshot point") && s.err().contains("finished after 1 exits"), s.err());
        assertTrue(!Files.exists(tmp.resolve("x").resolve("snapshot.json")), "nothing written");
    }

    private static String[] concat(String[] a, String[] b) {
        String[] r = new String[a.length + b.length];
        System.arraycopy(a, 0, r, 0, a.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
