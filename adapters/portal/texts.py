"""The portal pages' texts, Czech (default) and English: one table, so both stay complete.

Mail texts live with the mailer (adapters/portal/mailer.py); where a page says what a mail
says, it uses the same words (the pickup link, the revocation notice)."""

from __future__ import annotations

LANGUAGES = ("cs", "en")

TEXTS: dict[str, dict[str, str]] = {
    "title": {"cs": "Partnerský portál — certifikáty", "en": "Partner portal — certificates"},
    "skip": {"cs": "Přeskočit na obsah", "en": "Skip to content"},
    "language": {"cs": "English", "en": "Česky"},
    "logout": {"cs": "Odhlásit", "en": "Log out"},
    "logged_in_as": {"cs": "Přihlášen", "en": "Logged in as"},
    # chapter 4.2 / 6: the login page and its two tabs
    "login": {"cs": "Přihlášení", "en": "Log in"},
    "tab_software": {"cs": "Jednorázové heslo (nový certifikát)",
                     "en": "One-time password (new certificate)"},
    "tab_hardware": {"cs": "Hardwarový certifikát (token)", "en": "Hardware certificate (token)"},
    "user_id": {"cs": "Identifikátor uživatele", "en": "User identifier"},
    "otp": {"cs": "Jednorázové heslo", "en": "One-time password"},
    "module": {"cs": "Modul (nepovinné)", "en": "Module (optional)"},
    "module_name": {"cs": "Modul", "en": "Module"},
    "otp_help": {"cs": "Jednorázové heslo vám vydal správce modulu; platí 21 dní.",
                 "en": "The module administrator gave you the one-time password; it is valid "
                       "for 21 days."},
    "hardware_help": {"cs": "Vložte token s certifikátem a přihlaste se přes zabezpečenou "
                            "adresu portálu; prohlížeč se zeptá na certifikát a token na PIN.",
                      "en": "Insert the token with your certificate and log in at the portal's "
                            "secure address; the browser asks for the certificate and the "
                            "token for its PIN."},
    "login_certificate": {"cs": "Přihlásit certifikátem", "en": "Log in with the certificate"},
    "no_client_certificate": {"cs": "Prohlížeč neposlal žádný ověřený certifikát. Vložte token "
                                    "a zkuste to znovu.",
                              "en": "The browser sent no verified certificate. Insert the "
                                    "token and try again."},
    # chapter 4: the request
    "request": {"cs": "Žádost o certifikát", "en": "Certificate request"},
    "csr_help": {"cs": "Klíč vytvořte na tokenu a žádost (CSR) uložte tímto příkazem:",
                 "en": "Make the key on the token and save the request (CSR) with:"},
    "csr": {"cs": "Žádost o certifikát (CSR, PEM)", "en": "Certificate request (CSR, PEM)"},
    "csr_file": {"cs": "…nebo soubor s žádostí", "en": "…or the request file"},
    "password": {"cs": "Revokační heslo", "en": "Revocation password"},
    "password_again": {"cs": "Revokační heslo znovu", "en": "Revocation password again"},
    "password_rules": {"cs": "Revokačním heslem později certifikát zneplatníte. Alespoň 8 "
                             "znaků; obě položky se musí shodovat. Uschovejte si je — portál je "
                             "neukládá, jen jeho otisk.",
                       "en": "You will revoke the certificate with the revocation password. At "
                             "least 8 characters; both entries must match. Keep it — the portal "
                             "stores only a hash of it."},
    "submit_request": {"cs": "Odeslat žádost", "en": "Send the request"},
    # chapter 4.3–4.4: waiting, result, pickup
    "waiting": {"cs": "Certifikát se vydává…", "en": "The certificate is being issued…"},
    "waiting_help": {"cs": "Stránka se sama obnoví. Nemusíte čekat: až bude certifikát "
                           "vydán, přijde vám e-mail s jednorázovým odkazem k vyzvednutí.",
                     "en": "This page refreshes itself. You need not wait: once the "
                           "certificate is issued, an e-mail brings a single-use pickup link."},
    "issued": {"cs": "Váš certifikát je připraven", "en": "Your certificate is ready"},
    "rejected": {"cs": "Žádost byla zamítnuta", "en": "The request was refused"},
    "picked_up": {"cs": "Certifikát byl vyzvednut", "en": "The certificate was picked up"},
    "pick_up": {"cs": "Vyzvednout certifikát", "en": "Pick up the certificate"},
    "pickup_help": {"cs": "Odkaz platí jen jednou: certifikát se vydá až po stisknutí "
                          "tlačítka.",
                    "en": "The link works once: the certificate is handed out only when you "
                          "press the button."},
    "your_certificate": {"cs": "Váš certifikát", "en": "Your certificate"},
    "import_help": {"cs": "Uložte certifikát na token:", "en": "Store the certificate on the "
                                                                "token:"},
    "download_certificate": {"cs": "Stáhnout certifikát (PEM)",
                             "en": "Download the certificate (PEM)"},
    # the certificate manager (Správce certifikátů), chapters 5, 8, 9
    "manager": {"cs": "Správce certifikátů", "en": "Certificate manager"},
    "serial": {"cs": "Sériové číslo", "en": "Serial number"},
    "valid_from": {"cs": "Platný od", "en": "Valid from"},
    "valid_to": {"cs": "Platný do", "en": "Valid until"},
    "status": {"cs": "Stav", "en": "Status"},
    "status_good": {"cs": "platný", "en": "valid"},
    "status_revoked": {"cs": "zneplatněný", "en": "revoked"},
    "status_expired": {"cs": "prošlý", "en": "expired"},
    "status_unknown": {"cs": "neznámý", "en": "unknown"},
    "chain": {"cs": "Certifikáty certifikační autority (modul REV)",
              "en": "The CA certificates (module REV)"},
    "chain_pem": {"cs": "Řetězec PEM", "en": "Chain as PEM"},
    "chain_p7b": {"cs": "Řetězec PKCS#7", "en": "Chain as PKCS#7"},
    "renewal": {"cs": "Obnovení certifikátu", "en": "Renew the certificate"},
    "renewal_help": {"cs": "Obnovit lze jen platný certifikát. Nový klíč vytvořte na tokenu; "
                           "po vyzvednutí nového certifikátu se starý zneplatní.",
                     "en": "Only a valid certificate can be renewed. Make a new key on the "
                           "token; once the new certificate is picked up, the old one is "
                           "revoked."},
    "submit_renewal": {"cs": "Požádat o obnovení", "en": "Request the renewal"},
    "revocation": {"cs": "Zneplatnění certifikátu", "en": "Revoke the certificate"},
    "revocation_help": {"cs": "Zneplatnění nelze vrátit. Po pěti chybných heslech se "
                              "zneplatnění zablokuje; odblokuje je operátor.",
                        "en": "A revocation cannot be undone. After five wrong passwords "
                              "revocation is locked; an operator lifts the lock."},
    "reason": {"cs": "Důvod", "en": "Reason"},
    "submit_revocation": {"cs": "Zneplatnit certifikát", "en": "Revoke the certificate"},
    "revocation_done": {"cs": "Žádost o zneplatnění byla přijata. Certifikátem se již "
                              "nepřihlásíte; potvrzení přijde e-mailem.",
                        "en": "The revocation was accepted. The certificate no longer logs "
                              "in; a confirmation comes by e-mail."},
    "logged_out": {"cs": "Byli jste odhlášeni.", "en": "You have been logged out."},
    "error": {"cs": "Chyba", "en": "Error"},
    "session_needed": {"cs": "Přihlaste se prosím.", "en": "Please log in."},
    # ops console
    "ops": {"cs": "Konzole operátora", "en": "Ops console"},
    "ops_token": {"cs": "Přístupový token operátora", "en": "Ops access token"},
    "register": {"cs": "Registrovat uživatele", "en": "Register a user"},
    "email": {"cs": "E-mail", "en": "E-mail"},
    "modules": {"cs": "Moduly (oddělené čárkou)", "en": "Modules (comma separated)"},
    "issue_otp": {"cs": "Vydat jednorázové heslo", "en": "Issue a one-time password"},
    "otp_shown_once": {"cs": "Jednorázové heslo — zobrazí se jen teď, předejte je uživateli:",
                       "en": "The one-time password — shown only now, give it to the user:"},
    "search": {"cs": "Hledat (identifikátor uživatele nebo sériové číslo)",
               "en": "Search (user identifier or serial number)"},
    "find": {"cs": "Hledat", "en": "Find"},
    "ops_revoke": {"cs": "Zneplatnit (RFC 5280 důvod)", "en": "Revoke (RFC 5280 reason)"},
    "unlock": {"cs": "Odblokovat zneplatnění", "en": "Lift the revocation lock"},
    "done": {"cs": "Hotovo", "en": "Done"},
    "history": {"cs": "Historie", "en": "History"},
    "cause": {"cs": "Příčina", "en": "Cause"},
    # auditor pages
    "audit": {"cs": "Audit", "en": "Audit"},
    "timeline": {"cs": "Časová osa", "en": "Timeline"},
    "position": {"cs": "Pozice v logu", "en": "Log position"},
    "covered": {"cs": "Pokryto podepsanou hlavou stromu", "en": "Covered by a signed tree head"},
    "event": {"cs": "Událost", "en": "Event"},
    "time": {"cs": "Čas", "en": "Time"},
    "status_at": {"cs": "Stav k okamžiku", "en": "Status at a moment"},
    "at": {"cs": "Okamžik (ISO 8601)", "en": "Moment (ISO 8601)"},
    "ask": {"cs": "Zjistit", "en": "Ask"},
    "export_csv": {"cs": "Export CSV", "en": "Export CSV"},
    "print": {"cs": "Tisknutelná zpráva", "en": "Printable report"},
    "yes": {"cs": "ano", "en": "yes"},
    "no": {"cs": "ne", "en": "no"},
}


def text(key: str, language: str) -> str:
    entry = TEXTS[key]
    return entry.get(language) or entry["cs"]
