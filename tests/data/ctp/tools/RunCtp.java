import java.io.*;
import java.util.*;
import org.rsna.ctp.stdstages.anonymizer.*;
import org.rsna.ctp.stdstages.anonymizer.dicom.*;

/** Runs CTP's DICOMAnonymizer: RunCtp script lookup.properties|- outdir infile... */
public class RunCtp {
  public static void main(String[] a) throws Exception {
    Properties cmds = DAScript.getInstance(new File(a[0])).toProperties();
    Properties lkup = null;
    if (!a[1].equals("-")) { lkup = new Properties(); try (Reader r = new InputStreamReader(new FileInputStream(a[1]), "UTF-8")) { lkup.load(r); } }
    File tmp = new File(a[2], ".inttable"); tmp.mkdirs();
    IntegerTable it = new IntegerTable(tmp);
    for (int i = 3; i < a.length; i++) {
      File in = new File(a[i]);
      File out = new File(a[2], in.getName());
      AnonymizerStatus st = DICOMAnonymizer.anonymize(in, out, cmds, lkup, it, false, false);
      System.out.println(in.getName() + "\t" + st.getStatus() + "\t" + st.getMessage());
    }
    it.close();
  }
}
