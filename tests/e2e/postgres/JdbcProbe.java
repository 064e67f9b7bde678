import java.sql.*;

/** What DBeaver and Metabase do on connect, through the real JDBC driver: DatabaseMetaData's
 * schemas, tables and columns, then a prepared query. Prints one line per fact. */
public class JdbcProbe {
    public static void main(String[] args) throws Exception {
        String url = args[0], password = args[1], table = args[2], sql = args[3];
        try (Connection c = DriverManager.getConnection(url, "analyst", password)) {
            DatabaseMetaData meta = c.getMetaData();
            System.out.println("product\t" + meta.getDatabaseProductName() + "\t" + meta.getDatabaseProductVersion());
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) System.out.println("schema\t" + rs.getString("TABLE_SCHEM"));
            }
            try (ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                while (rs.next()) System.out.println("table\t" + rs.getString("TABLE_SCHEM") + "\t" + rs.getString("TABLE_NAME"));
            }
            try (ResultSet rs = meta.getColumns(null, "public", table, "%")) {
                while (rs.next()) {
                    System.out.println("column\t" + rs.getString("COLUMN_NAME") + "\t" + rs.getString("TYPE_NAME")
                        + "\t" + rs.getInt("DATA_TYPE") + "\t" + rs.getInt("COLUMN_SIZE") + "\t" + rs.getInt("DECIMAL_DIGITS"));
                }
            }
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                ps.setLong(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    ResultSetMetaData md = rs.getMetaData();
                    while (rs.next()) {
                        StringBuilder line = new StringBuilder("row");
                        for (int i = 1; i <= md.getColumnCount(); i++) {
                            Object value = rs.getObject(i);
                            line.append("\t").append(md.getColumnName(i)).append("=")
                                .append(value == null ? "NULL" : value.getClass().getSimpleName() + ":" + rs.getString(i));
                        }
                        System.out.println(line);
                    }
                }
            }
        }
    }
}
