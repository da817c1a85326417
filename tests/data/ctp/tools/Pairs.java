import java.io.*;
import org.rsna.ctp.stdstages.anonymizer.AnonymizerFunctions;

/** Prints CTP AnonymizerFunctions results for the requests on stdin (tab-separated). */
public class Pairs {
  public static void main(String[] a) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
    PrintStream out = new PrintStream(System.out, true, "UTF-8");
    String line;
    while ((line = in.readLine()) != null) {
      String[] f = line.split("\t", -1);
      String r;
      try {
        switch (f[0]) {
          case "hash": r = AnonymizerFunctions.hash(f[1], Integer.parseInt(f[2])); break;
          case "hashptid": r = AnonymizerFunctions.hashPtID(f[1], f[2], Integer.parseInt(f[3])); break;
          case "hashuid": r = AnonymizerFunctions.hashUID(f[1], f[2]); break;
          case "hashname": r = AnonymizerFunctions.hashName(f[1], Integer.parseInt(f[2]), Integer.parseInt(f[3])); break;
          case "initials": r = AnonymizerFunctions.initials(f[1]); break;
          case "caesar": r = AnonymizerFunctions.encrypt(f[1], Integer.parseInt(f[2])); break;
          case "round": r = AnonymizerFunctions.round(f[1], Integer.parseInt(f[2])); break;
          case "incrementdate": r = AnonymizerFunctions.incrementDate(f[1], Long.parseLong(f[2])); break;
          case "modifydate": r = AnonymizerFunctions.modifyDate(f[1], Integer.parseInt(f[2]), Integer.parseInt(f[3]), Integer.parseInt(f[4])); break;
          case "encrypt": r = AnonymizerFunctions.encrypt(f[1], f[2]); break;
          case "decrypt": r = AnonymizerFunctions.decrypt(f[1], f[2]); break;
          default: r = "?";
        }
      } catch (Exception e) { r = "!" + e.getClass().getSimpleName(); }
      out.println(line + "\t" + r);
    }
  }
}
