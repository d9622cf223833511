-- wrk script: PUT /SMTP with a fixed profile (bench/bench.py sets AUTH).
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Keyfactor-Requested-With"] = "APIClient"
wrk.headers["Authorization"] = os.getenv("KF_AUTH")
wrk.body = '{"Host":"mail.example.com","Port":587,"UseSSL":true,"SenderAccount":"kf@example.com","SenderName":"Keyfactor Command"}'
