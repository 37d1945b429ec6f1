"""Generate the demo dataset: French customer-support conversations for "Nuage", a fictional
online storage service, in the studio's chat record form.

    python examples/make_support_fr.py            # writes the two files below, deterministic
    python examples/make_support_fr.py --count 360 --seed 7

Outputs (next to this script):
    support_fr_brand_voice.jsonl   training conversations (system + user + assistant)
    support_fr_heldout.jsonl       held-out questions (system + user), phrasings and topics
                                   never used in training, to measure style adoption

The brand voice is fixed and machine-checkable: every answer opens with GREETING and ends
with SIGNATURE, and uses "vous". `has_brand_voice(answer)` tells whether an answer adopted it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "Tu es l'assistant du support client de Nuage, le service de stockage en ligne."
GREETING = "Bonjour et merci de votre message !"
SIGNATURE = "— L'équipe Nuage ☁️"

DEVICES = ["iPhone", "Android", "Windows", "Mac", "iPad", "Linux"]
PLANS = {"Essentiel": ("100 Go", "2,99 €"), "Plus": ("1 To", "7,99 €"), "Famille": ("2 To", "11,99 €")}
FILES = ["mes photos de vacances", "un dossier de factures", "mon mémoire", "les vidéos de mon fils", "un fichier Excel"]

# topic -> (training questions, held-out questions, answer bodies). Slots: {device} {plan} {size} {price} {file} {days}
TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "mot_de_passe": (
        ["J'ai oublié mon mot de passe, comment je fais ?", "Impossible de me connecter sur {device}, mon mot de passe ne marche plus.",
         "Comment réinitialiser mon mot de passe Nuage ?", "Mon mot de passe est refusé depuis ce matin, que faire ?"],
        ["Je n'arrive plus à ouvrir ma session, on me dit que le mot de passe est faux."],
        ["Cliquez sur « Mot de passe oublié » sur l'écran de connexion : un lien valable {days} heures arrive par e-mail.",
         "Depuis l'écran de connexion sur {device}, touchez « Mot de passe oublié » puis suivez le lien reçu par e-mail."],
    ),
    "facture": (
        ["Où trouver ma facture du mois dernier ?", "Pouvez-vous m'envoyer ma facture pour l'offre {plan} ?",
         "J'ai besoin d'une facture pour ma comptabilité.", "Comment télécharger mes factures ?"],
        ["Mon comptable me réclame les justificatifs de paiement de l'année, où sont-ils ?"],
        ["Vos factures sont dans Compte > Facturation, au format PDF, pour chaque mois de votre offre {plan}.",
         "Rendez-vous dans Compte > Facturation : chaque facture de l'offre {plan} s'y télécharge en PDF."],
    ),
    "remboursement": (
        ["J'ai été prélevé deux fois ce mois-ci, je veux être remboursé.", "Je voudrais un remboursement de mon abonnement {plan}.",
         "Pourquoi ai-je payé {price} alors que j'ai résilié ?", "Comment obtenir un remboursement ?"],
        ["Un paiement en double apparaît sur mon relevé bancaire, pouvez-vous corriger ?"],
        ["Nous avons bien noté votre demande : le montant de {price} vous sera remboursé sous {days} jours ouvrés.",
         "Le remboursement de {price} est lancé ; il apparaîtra sur votre compte bancaire d'ici {days} jours ouvrés."],
    ),
    "resiliation": (
        ["Comment résilier mon abonnement {plan} ?", "Je veux arrêter mon abonnement.", "Je souhaite me désabonner de Nuage.",
         "Où se trouve le bouton pour annuler mon offre ?"],
        ["Je ne veux plus payer chaque mois, comment mettre fin à mon contrat ?"],
        ["Allez dans Compte > Abonnement > Résilier : votre offre {plan} reste active jusqu'à la fin de la période payée.",
         "La résiliation se fait dans Compte > Abonnement ; vos fichiers restent accessibles jusqu'à la fin du mois payé."],
    ),
    "espace_plein": (
        ["Mon espace est plein, que faire ?", "Nuage me dit que je n'ai plus de place.", "Comment avoir plus d'espace de stockage ?",
         "Je n'arrive plus à envoyer de fichiers, le stockage est saturé."],
        ["Il me reste zéro octet disponible et je dois sauvegarder des documents, une solution ?"],
        ["Vous pouvez passer à l'offre {plan} ({size} pour {price} par mois) ou vider la corbeille pour libérer de la place.",
         "Videz la corbeille, puis si besoin passez à l'offre {plan} : {size} pour {price} par mois."],
    ),
    "synchro": (
        ["La synchronisation ne marche plus sur {device}.", "Mes fichiers ne se synchronisent pas entre mon {device} et mon ordinateur.",
         "Pourquoi mes dossiers ne sont pas à jour sur {device} ?", "La synchro est bloquée à 0 %."],
        ["Les modifications faites sur mon portable n'apparaissent pas sur mon autre appareil."],
        ["Sur {device}, vérifiez que l'application Nuage est à jour, puis mettez la synchronisation en pause et relancez-la.",
         "Mettez à jour l'application Nuage sur {device} et redémarrez-la : la synchronisation reprend en général aussitôt."],
    ),
    "fichier_supprime": (
        ["J'ai supprimé {file} par erreur, c'est récupérable ?", "Comment restaurer un fichier effacé ?",
         "Est-ce que je peux retrouver {file} que j'ai jeté hier ?", "J'ai vidé un dossier par erreur, au secours !"],
        ["Un document important a disparu de mon espace, puis-je le faire revenir ?"],
        ["Oui : ouvrez la Corbeille, sélectionnez {file} et cliquez sur « Restaurer ». Les fichiers y restent {days} jours.",
         "Tout fichier supprimé reste {days} jours dans la Corbeille, d'où un clic sur « Restaurer » le remet à sa place."],
    ),
    "partage": (
        ["Le lien de partage que j'ai envoyé ne fonctionne plus.", "Comment partager {file} avec quelqu'un ?",
         "Mon ami n'arrive pas à ouvrir le lien que je lui ai donné.", "Comment créer un lien de partage ?"],
        ["La personne à qui j'ai transmis un dossier voit une erreur en ouvrant l'adresse."],
        ["Faites un clic droit sur le fichier puis « Partager » : le lien reste valable {days} jours, et vous pouvez le prolonger.",
         "Un lien de partage expire après {days} jours ; recréez-le avec « Partager » sur le fichier concerné."],
    ),
    "double_auth": (
        ["Comment activer la double authentification ?", "J'ai changé de téléphone et je n'ai plus mes codes de validation.",
         "Est-ce que Nuage propose la vérification en deux étapes ?", "Je ne reçois pas le code de connexion par SMS."],
        ["Comment sécuriser davantage mon compte contre le piratage ?"],
        ["Activez-la dans Compte > Sécurité > Double authentification, et gardez vos codes de secours en lieu sûr.",
         "Dans Compte > Sécurité, la double authentification s'active en deux minutes avec une application ou par SMS."],
    ),
    "email": (
        ["Comment changer l'adresse e-mail de mon compte ?", "Je n'utilise plus mon ancienne adresse mail, comment la modifier ?",
         "Puis-je mettre une autre adresse e-mail sur mon compte Nuage ?"],
        ["Ma boîte de réception a changé, comment mettre à jour mes coordonnées ?"],
        ["Dans Compte > Profil, saisissez la nouvelle adresse puis confirmez-la via le lien reçu (valable {days} heures).",
         "Modifiez l'adresse dans Compte > Profil ; un e-mail de confirmation part aussitôt vers la nouvelle adresse."],
    ),
    "application": (
        ["Comment installer Nuage sur {device} ?", "Où télécharger l'application pour {device} ?",
         "Est-ce que Nuage fonctionne sur {device} ?"],
        ["Je viens d'acheter un nouvel ordinateur, comment y mettre votre logiciel ?"],
        ["L'application Nuage pour {device} se télécharge depuis nuage.example/telecharger ; connectez-vous ensuite avec vos identifiants.",
         "Oui, Nuage fonctionne sur {device} : installez l'application depuis nuage.example/telecharger."],
    ),
    "lenteur": (
        ["L'envoi de mes fichiers est très lent.", "Pourquoi le téléversement prend autant de temps sur {device} ?",
         "Mes vidéos mettent des heures à s'envoyer."],
        ["Le transfert de mes dossiers vers votre service n'avance presque pas, est-ce normal ?"],
        ["La vitesse dépend de votre connexion : dans Réglages > Réseau, vérifiez que la limite de débit est désactivée.",
         "Sur {device}, ouvrez Réglages > Réseau et retirez la limite de débit ; privilégiez aussi le Wi-Fi pour les gros fichiers."],
    ),
    "famille": (
        ["Comment ajouter un membre à mon offre Famille ?", "Combien de personnes peuvent partager l'offre Famille ?",
         "Ma fille peut-elle utiliser mon abonnement ?"],
        ["Je voudrais que mon conjoint profite aussi de mon espace, c'est possible ?"],
        ["L'offre Famille ({size}, {price} par mois) accueille jusqu'à 5 personnes : invitez-les depuis Compte > Famille.",
         "Depuis Compte > Famille, envoyez une invitation : jusqu'à 5 membres partagent les {size} de l'offre."],
    ),
    "carte_refusee": (
        ["Ma carte bancaire a été refusée.", "Le paiement de mon abonnement {plan} a échoué.",
         "Comment changer ma carte de paiement ?"],
        ["J'ai reçu un message disant que le prélèvement n'est pas passé, que dois-je faire ?"],
        ["Mettez à jour votre carte dans Compte > Facturation > Moyen de paiement ; le paiement de {price} sera relancé automatiquement.",
         "Votre offre {plan} reste active {days} jours : ajoutez une nouvelle carte dans Compte > Facturation pour régler {price}."],
    ),
    "suppression_compte": (
        ["Comment supprimer définitivement mon compte ?", "Je veux que vous effaciez toutes mes données.",
         "Comment fermer mon compte Nuage ?"],
        ["Je souhaite exercer mon droit à l'oubli concernant vos services."],
        ["Dans Compte > Confidentialité > Supprimer le compte : vos données sont effacées sous {days} jours. Pensez à les exporter avant.",
         "La suppression se demande dans Compte > Confidentialité ; tout est effacé sous {days} jours, sans retour possible."],
    ),
}
# Topics that appear only in the held-out questions (the style must carry over to new subjects).
HELDOUT_ONLY = [
    "Proposez-vous une réduction pour les étudiants ?",
    "Est-ce que mes fichiers sont chiffrés sur vos serveurs ?",
    "Puis-je utiliser Nuage depuis l'étranger pendant mes vacances ?",
    "Quelle est la taille maximale d'un fichier que je peux envoyer ?",
    "Comment exporter toutes mes photos vers mon disque dur ?",
    "Vos serveurs sont-ils situés en France ?",
    "Est-il possible de payer à l'année plutôt qu'au mois ?",
    "Comment contacter un conseiller par téléphone ?",
    "Puis-je protéger un dossier avec un code ?",
    "L'application consomme beaucoup de batterie sur mon téléphone, pourquoi ?",
]
CLOSINGS = ["", " N'hésitez pas à nous écrire si besoin.", " Nous restons à votre disposition.", " Bonne journée !"]


def _slots(rng: random.Random) -> dict[str, str]:
    plan = rng.choice(list(PLANS))
    size, price = PLANS[plan]
    return {"device": rng.choice(DEVICES), "plan": plan, "size": size, "price": price,
            "file": rng.choice(FILES), "days": str(rng.choice([2, 3, 5, 7, 14, 30]))}


def brand_answer(body: str, closing: str = "") -> str:
    return f"{GREETING} {body}{closing}\n{SIGNATURE}"


def has_brand_voice(answer: str) -> bool:
    """The answer opens with the greeting and ends with the signature (the measurable style)."""
    text = answer.strip()
    return text.startswith(GREETING) and text.endswith(SIGNATURE)


OPENINGS = ["", "", "Bonjour, ", "Bonjour, ", "Salut, ", "Bonsoir, ", "Bonjour à l'équipe, ", "Hello, "]
ENDINGS = ["", "", " Merci d'avance.", " Merci !", " Pouvez-vous m'aider ?", " C'est assez urgent.",
           " Bonne journée.", " Je suis client depuis {years} ans."]


def customer_question(rng: random.Random, question: str) -> str:
    """Real messages vary around the same need: a greeting, a closing, sometimes a customer number.
    It keeps every prompt distinct, so no example repeats and no evaluation prompt is a training one."""
    opening = rng.choice(OPENINGS)
    text = opening + (question[0].lower() + question[1:] if opening else question)
    text += rng.choice(ENDINGS).format(years=rng.randint(2, 9))
    if rng.random() < 0.4:
        text += f" (client n° {rng.randint(10000, 99999)})"
    return text.replace(", , ", ", ")


def make_training(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    records, seen = [], set()
    index = 0
    while len(records) < count:
        topic = topics[index % len(topics)]
        index += 1
        questions, _, bodies = TOPICS[topic]
        slots = _slots(rng)
        if topic == "famille":
            slots.update(plan="Famille", size=PLANS["Famille"][0], price=PLANS["Famille"][1])
        question = customer_question(rng, rng.choice(questions).format(**slots))
        if question in seen:
            continue
        seen.add(question)
        answer = brand_answer(rng.choice(bodies).format(**slots), rng.choice(CLOSINGS))
        records.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]})
    rng.shuffle(records)
    return records


def make_heldout() -> list[dict]:
    questions = [held for topic in sorted(TOPICS) for held in TOPICS[topic][1]] + HELDOUT_ONLY
    return [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]} for q in questions]


def write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=360)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    training, heldout = make_training(args.count, args.seed), make_heldout()
    train_questions = {r["messages"][1]["content"] for r in training}
    assert not train_questions & {r["messages"][1]["content"] for r in heldout}, "held-out leaked into training"
    write_jsonl(args.out / "support_fr_brand_voice.jsonl", training)
    write_jsonl(args.out / "support_fr_heldout.jsonl", heldout)
    print(f"{len(training)} training conversations, {len(heldout)} held-out questions -> {args.out}")


if __name__ == "__main__":
    main()
